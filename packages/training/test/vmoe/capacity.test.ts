/**
 * vmoe's capacity rule (`vmoe.moe.compute_capacity`) against hand-worked values, and the routers
 * that use it.
 */
import {VMoESparseOTRouter, VMoETopKRouter, vmoeCapacity} from '@tfjs-moe/models';
import {InvalidArgumentError} from '@tfjs-moe/router';

describe('vmoeCapacity', () => {
  it('ceil of (tokens * factor) / experts in float64 without an epsilon, then a multiple of 4', () => {
    // 200 * 1.1 / 4 = 55.00000000000001 in float64: ceil gives 56 (a rule with an epsilon gives 55).
    expect(vmoeCapacity(200, 4, 1.1, {capacityMultipleOf: null})).toBe(56);
    expect(vmoeCapacity(200, 4, 1.1)).toBe(56);
    // 20 tokens * 2 choices, factor 1, 4 experts: 10, rounded up to 12.
    expect(vmoeCapacity(40, 4, 1.0)).toBe(12);
    expect(vmoeCapacity(40, 4, 1.0, {capacityMultipleOf: 0})).toBe(10);
    // 400 * 1.05 / 8 = 52.5 -> 53 -> 56 (V-MoE S/32 training, K=1).
    expect(vmoeCapacity(400, 8, 1.05)).toBe(56);
  });

  it("'round' is Python's round (half to even), and a fixed capacity wins", () => {
    expect(vmoeCapacity(10, 4, 1, {capacityRounding: 'round', capacityMultipleOf: null})).toBe(2); // 2.5 -> 2
    expect(vmoeCapacity(14, 4, 1, {capacityRounding: 'round', capacityMultipleOf: null})).toBe(4); // 3.5 -> 4
    expect(vmoeCapacity(13, 4, 1, {capacityRounding: 'round', capacityMultipleOf: null})).toBe(3); // 3.25 -> 3
    expect(vmoeCapacity(13, 4, 1, {fixedCapacity: 7})).toBe(7);
  });

  it('below 1 is an error, as in vmoe, unless minCapacity lifts it', () => {
    expect(() => vmoeCapacity(2, 8, 0.1, {capacityRounding: 'round'})).toThrow(InvalidArgumentError);
    expect(vmoeCapacity(2, 8, 0.1, {capacityRounding: 'round', minCapacity: 2, capacityMultipleOf: null})).toBe(2);
  });

  it('the routers size capacity with it (k tokens per token for top-k, the group for OT), clamped to the group', () => {
    const topk = new VMoETopKRouter({numExperts: 4, k: 2});
    expect(topk.computeCapacity(20, 1.0)).toBe(12);
    expect(topk.computeCapacity(10, 1.0)).toBe(8); // 5 -> 8
    expect(topk.computeCapacity(10, 4.0)).toBe(10); // 20 -> clamped to the group
    const ot = new VMoESparseOTRouter({numExperts: 4, preset: 'paper'});
    expect(ot.computeCapacity(20, 1.0)).toBe(8); // 5 -> 8
    const restored = new VMoETopKRouter(topk.getConfig() as never);
    expect(restored.capacityOptions).toEqual(topk.capacityOptions);
  });
});
