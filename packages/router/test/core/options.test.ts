import {checkOptions, editDistance, nearestKey, UnknownOptionError} from '../../src/core/options';
import {InvalidArgumentError} from '../../src/core/errors';

describe('checkOptions', () => {
  it('computes edit distances by hand-worked cases', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3); // k->s, e->i, +g
    expect(editDistance('capacityFacter', 'capacityFactor')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('TopK', 'topk')).toBe(0); // case-insensitive
  });

  it('suggests the nearest known key, or none when nothing is close', () => {
    expect(nearestKey('capacityFacter', ['k', 'capacityFactor', 'numExperts'])).toBe('capacityFactor');
    expect(nearestKey('kk', ['k', 'capacityFactor'])).toBe('k');
    expect(nearestKey('topK', ['k', 'numExperts'])).toBe('k');
    expect(nearestKey('zzzzzzzzz', ['k', 'numExperts'])).toBeUndefined();
  });

  it('accepts known keys, undefined and null', () => {
    const o = {k: 2};
    expect(checkOptions(o, ['k'], 'f')).toBe(o);
    expect(checkOptions(undefined, ['k'], 'f')).toBeUndefined();
  });

  it('rejects an unknown key, naming it, its value and the suggestion', () => {
    let err: unknown;
    try {
      checkOptions({k: 2, capacityFacter: 2}, ['k', 'capacityFactor'], 'moe');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnknownOptionError);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    const e = err as UnknownOptionError;
    expect(e.key).toBe('capacityFacter');
    expect(e.value).toBe(2);
    expect(e.suggestion).toBe('capacityFactor');
    expect(e.message).toBe(
      "moe: Unknown option 'capacityFacter'. Did you mean 'capacityFactor'? Known options: capacityFactor, k.",
    );
  });

  it('rejects an undefined-valued unknown key and a non-object', () => {
    expect(() => checkOptions({kk: undefined}, ['k'], 'f')).toThrow(UnknownOptionError);
    expect(() => checkOptions([1] as unknown as object, ['k'], 'f')).toThrow(
      'f: Expected options to be an object, but got [1].',
    );
  });
});
