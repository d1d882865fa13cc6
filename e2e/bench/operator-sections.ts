/**
 * The operator's sections: P3 (convergence at scale, ARM call budget, Node mode), the operator half of P4
 * (RSS with many PodIdentities and pods) and the P3 half of P5 (time to Ready as N grows).
 */
import type { BenchEnv } from './fixture.js';
import type { BenchOptions } from './options.js';
import { notMeasured, section, type GoalBook, type Section } from './report.js';

export interface OperatorSections {
  p3: Section;
  p4: Section;
  p5: Section;
  p5Chart?: string;
}

export interface OperatorWanted {
  available: boolean;
  p3: boolean;
  p4: boolean;
  p5: boolean;
}

const P3_GOALS: [string, string][] = [
  ['1,000 PodIdentities Ready', '≤ 60 s'],
  ['ARM writes per PodIdentity', '≤ 1 identity PUT + 1 role PUT + 1 credential PUT, no duplicates'],
  ['steady state after convergence', 'no ARM writes, ≤ 1 read per object per resync period'],
  ['Node mode: scale-set PATCHes', '≤ 2 per batch window'],
];

export async function runOperatorSections(_env: BenchEnv, _opts: BenchOptions, goals: GoalBook, _log: (m: string) => void, want: OperatorWanted): Promise<OperatorSections> {
  const why = 'operator not available (operator/main.ts does not exist in this tree)';
  if (!want.available) {
    if (want.p3) for (const [name, target] of P3_GOALS) goals.unmeasured('P3', name, target, why);
    if (want.p4) goals.unmeasured('P4', 'operator RSS with 1,000 PodIdentities and 5,000 pods', '≤ 300 MB', why);
    return {
      p3: notMeasured('P3', 'Convergence at scale (operator)', `not measured: ${why}`),
      p4: notMeasured('P4', 'Memory (operator half)', `not measured: ${why}`),
      p5: notMeasured('P5', 'P3 time vs N', `not measured: ${why}`),
    };
  }
  return { p3: section('P3', 'x'), p4: section('P4', 'x'), p5: section('P5', 'x') };
}
