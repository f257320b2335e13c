/** The routing probe's per-token read-out of an expert-slot assignment, worked by hand. */
import {expertOfTokens} from '../src/routing';

describe('expertOfTokens', () => {
  test('largest-weight expert, every expert of each token, per-expert load; empty slots ignored', () => {
    // Expert 0 holds tokens 0 (weight 0.6) and 2 (0.3); expert 1 holds token 2 (0.5) and one
    // empty slot (-1). Token 1 is in no slot: dropped.
    const r = expertOfTokens([[0, 2], [2, -1]], [[0.6, 0.3], [0.5, 0]], 3);
    expect(r.expert).toEqual([0, -1, 1]); // token 2: 0.5 (expert 1) > 0.3 (expert 0)
    expect(r.all).toEqual([[0], [], [0, 1]]);
    expect(r.load).toEqual([2, 1]);
  });

  test('slot indices outside [0, tokens) are not tokens (padding)', () => {
    const r = expertOfTokens([[3, 0]], [[0.9, 0.1]], 2);
    expect(r.expert).toEqual([0, -1]);
    expect(r.all).toEqual([[0], []]);
  });
});
