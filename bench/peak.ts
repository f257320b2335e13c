// Prints the measured matMul peak of each backend: `npx tsx bench/peak.ts [--backends=wasm,cpu]`.
import {backendsFromArgs, machineDescription, measureMatMulPeak, selectBackend} from './common';

async function main(): Promise<void> {
  console.log(machineDescription());
  for (const backend of backendsFromArgs()) {
    await selectBackend(backend);
    console.log(`${backend}: matMul peak ${(await measureMatMulPeak()).toFixed(2)} GFLOP/s`);
  }
}
void main();
