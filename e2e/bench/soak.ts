import type { AgentStage } from './agent-sections.js';
import type { BenchEnv } from './fixture.js';
import type { BenchOptions } from './options.js';
import { notMeasured, type GoalBook, type Section } from './report.js';

export async function runSoak(_env: BenchEnv, _stage: AgentStage, _opts: BenchOptions, _goals: GoalBook, _log: (m: string) => void, _operator: boolean): Promise<Section> {
  return notMeasured('SOAK', 'Resilience and security soak', 'todo');
}
