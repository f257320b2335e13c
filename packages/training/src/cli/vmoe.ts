/**
 * The `tfjs-moe import-vmoe` and `tfjs-moe export-vmoe` subcommands: the bridge to
 * google-research/vmoe checkpoints.
 *
 * @example
 * ```sh
 * npx tfjs-moe import-vmoe workdir/ckpt_1000 --config model-config.json --out models/vmoe_s32
 * npx tfjs-moe export-vmoe --model runs/topk/model --out export/ckpt_0
 * ```
 */
import {setupBackend} from '../backend';
import {joinNegativeValues, reportCommandError} from './args';
import * as path from 'path';
import {parseArgs} from 'util';
import {InvalidArgumentError} from '@tfjs-moe/router';
import {checkCheckpointPath, checkOutputFolder, checkOutputPrefix, exportVMoEFromFolder, importVMoEToFolder, readConfigFile} from '../vmoe/node';

/** The subcommands this module runs. */
export const VMOE_COMMANDS = ['import-vmoe', 'export-vmoe'] as const;

export const VMOE_USAGE = `Usage:
  tfjs-moe import-vmoe <checkpoint> --config <model-config.json> --out <dir> [options]
  tfjs-moe export-vmoe --model <dir> --out <prefix> [options]

import-vmoe: read a google-research/vmoe checkpoint and write a tfjs LayersModel folder
(model.json + weights.bin) whose output is vmoe's logits for NHWC float32 images (vmoe feeds
pixels scaled to [-1, 1]). Load it with tf.loadLayersModel after importing @tfjs-moe/models.
  <checkpoint>                 a partitioned checkpoint prefix (<prefix>.index + <prefix>.data-*),
                               a flax .msgpack file or a .npz file; a train state yields its params
  --config <file>              vmoe's config.model as JSON (ml_collections to_json()), with the
                               evaluation overrides applied if you want vmoe's evaluation logits
  --out <dir>                  output folder (new or empty)
  --overwrite                  replace the contents of a non-empty --out folder
  --image-size <n>             input size in pixels (default: from the position embedding)
  --accept-float32-dispatch    accept dispatcher.bfloat16: true (tfjs-moe computes the experts in
                               float32; logits differ by about 1e-3)

export-vmoe: write a model saved by tfjs-moe as a V1 partitioned vmoe checkpoint
(<prefix>.index, <prefix>.data-NNNNN-of-MMMMM) plus <prefix>.config.json (vmoe's config.model)
and, if the evaluation capacity factor differs, <prefix>.eval_overrides.json.
  --model <dir>                a folder with model.json + weights.bin (vit() / vmoe() models)
  --out <prefix>               checkpoint prefix, e.g. export/ckpt_0 (no checkpoint there yet)
  --overwrite                  replace a checkpoint already under --out
  --shards <n>                 number of data shards (default 1)
  --allow-gelu-approximation   export a model trained with the exact (erf) GELU; vmoe computes the
                               tanh approximation

Both: --verbose prints the stack trace of an unexpected error.
`;

const OPTIONS = {
  config: {type: 'string'},
  out: {type: 'string'},
  'image-size': {type: 'string'},
  'accept-float32-dispatch': {type: 'boolean'},
  model: {type: 'string'},
  shards: {type: 'string'},
  'allow-gelu-approximation': {type: 'boolean'},
  overwrite: {type: 'boolean'},
  verbose: {type: 'boolean'},
  help: {type: 'boolean', short: 'h'},
} as const;

function positiveInt(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw === '' || !Number.isInteger(v) || v < 1) throw new InvalidArgumentError(flag, 'a positive integer', raw);
  return v;
}

function required(value: string | undefined, flag: string, what: string): string {
  if (!value) throw new InvalidArgumentError(flag, what, value);
  return value;
}

/**
 * Runs `import-vmoe` or `export-vmoe` with the arguments after the command; returns the exit code
 * (0 done, 1 an error, printed as one line (with its stack trace too under `--verbose`), 2 a usage
 * error).
 *
 * @example
 * ```ts
 * await vmoeCommand('import-vmoe', ['ckpt_1000', '--config', 'model.json', '--out', 'models/m']);
 * ```
 */
export async function vmoeCommand(command: (typeof VMOE_COMMANDS)[number], argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({values, positionals} = parseArgs({args: joinNegativeValues(argv, OPTIONS), options: OPTIONS, allowPositionals: true, strict: true}));
  } catch (e) {
    console.error(`tfjs-moe ${command}: ${(e as Error).message}\n\n${VMOE_USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(VMOE_USAGE);
    return 0;
  }
  try {
    // The best available backend (tfjs-node, else wasm, else cpu), initialized before any tensor.
    await setupBackend('auto');
    if (command === 'import-vmoe') {
      if (positionals.length !== 1) throw new InvalidArgumentError('<checkpoint>', 'one checkpoint (a partitioned prefix, a .msgpack or a .npz file)', positionals);
      const checkpoint = positionals[0];
      const config = required(values.config as string | undefined, '--config', "a JSON file holding vmoe's config.model");
      const out = required(values.out as string | undefined, '--out', 'an output folder');
      const imageSize = positiveInt(values['image-size'] as string | undefined, '--image-size');
      // Every path checked under its flag's name before anything is read or written.
      const overwrite = values.overwrite === true;
      checkOutputFolder(out, overwrite, '--out');
      checkCheckpointPath(checkpoint, '<checkpoint>');
      const configJson = readConfigFile(config, '--config') as object;
      const {model, checkpoint: info, config: imported} = await importVMoEToFolder(checkpoint, configJson, out, {
        imageSize,
        acceptFloat32Dispatch: values['accept-float32-dispatch'] === true,
        overwrite,
      });
      const kind = info.format === 'partitioned' ? `partitioned ${info.version ? `V1 (${info.version})` : 'legacy'}` : info.format;
      const [, h, w, c] = model.inputs[0].shape as number[];
      const moeBlocks = imported.isMoE ? (imported.config as {moeBlocks: number[]}).moeBlocks : [];
      console.log(`${checkpoint} (${kind}${info.trainState ? ', train state: params' : ''}): ${model.countParams()} parameters, `
        + `input [batch, ${h}, ${w}, ${c}], ${moeBlocks.length ? `MoE blocks ${moeBlocks.join(',')}` : 'dense'}, output logits`);
      console.log(`wrote ${path.resolve(out)}`);
      model.dispose();
    } else {
      if (positionals.length > 0) throw new InvalidArgumentError('arguments', 'only options (--model, --out, ...)', positionals);
      const modelDir = required(values.model as string | undefined, '--model', 'a model folder (model.json + weights.bin)');
      const out = required(values.out as string | undefined, '--out', 'a checkpoint prefix such as export/ckpt_0');
      const shards = positiveInt(values.shards as string | undefined, '--shards');
      const overwrite = values.overwrite === true;
      checkOutputPrefix(out, overwrite, '--out');
      const written = await exportVMoEFromFolder(modelDir, out, {
        shards,
        allowGeluApproximation: values['allow-gelu-approximation'] === true,
        overwrite,
      });
      for (const f of written) console.log(`wrote ${path.resolve(f)}`);
    }
  } catch (e) {
    return reportCommandError(e, command, values.verbose === true);
  }
  return 0;
}
