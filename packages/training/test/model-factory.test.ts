import {MoE} from '@tfjs-moe/router';
import {buildModel, resolveModelSpec} from '../src/model-factory';

const INPUT = {height: 28, width: 28, channels: 1, numClasses: 10};

describe('model factory: experts per token and defaults', () => {
  it('builds top-1 and top-2 V-MoEs whose routers select k experts per token', () => {
    for (const k of [1, 2]) {
      const model = buildModel({router: 'topk', expertsPerToken: k}, INPUT);
      const layers = model.layers.filter((l): l is MoE => l instanceof MoE);
      expect(layers.length).toBe(2);
      for (const l of layers) expect((l.router.getConfig() as {k: number}).k).toBe(k);
      model.dispose();
    }
  });

  it('rejects experts per token outside [1, experts] or on a router without k', () => {
    expect(() => resolveModelSpec({router: 'topk', experts: 4, expertsPerToken: 5})).toThrow('Expected expertsPerToken to be an integer in [1, 4] (the experts), but got 5.');
    expect(() => resolveModelSpec({router: 'sinkhorn', expertsPerToken: 2})).toThrow(`Expected expertsPerToken to be unset for router 'sinkhorn' (a top-k setting), but got 2.`);
  });

});
