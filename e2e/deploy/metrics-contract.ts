/**
 * The observability contract: every metric the Grafana dashboard and the Prometheus alerts use exists in what
 * the programs expose, with every label the queries match, group or join on.
 *
 * - Exposition text is parsed with parse-prometheus-text-format (a real text-format parser).
 * - PromQL is parsed with @prometheus-io/lezer-promql, the grammar the Prometheus UI itself uses, so label
 *   names are read from the syntax tree (matchers, by/without, on/ignoring), not guessed with regexes.
 *
 * Reusable: the full-stack test passes the text of live /metrics scrapes; e2e/deploy/observability_e2e.ts
 * passes in-process registries.
 */
import { readFileSync } from 'node:fs';
import { parser } from '@prometheus-io/lezer-promql';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { parse as parseYaml } from 'yaml';

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

/** Our metric name prefixes: anything else must be a known external metric. */
export const OWN_PREFIXES = ['podidentity_operator_', 'podidentity_agent_'] as const;

/** Labels Prometheus attaches to every scraped series (ServiceMonitor target labels; `node` by relabeling). */
export const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod', 'service', 'endpoint', 'container', 'node'] as const;

/** Series from outside our programs that the assets may use, with their labels. */
export const EXTERNAL_SERIES: Record<string, string[]> = {
  // Prometheus' own scrape health.
  up: [],
  // kube-state-metrics (kube-prometheus ships it): a DaemonSet pod that is not running has no target at all.
  kube_daemonset_status_number_unavailable: ['daemonset'],
  kube_daemonset_status_desired_number_scheduled: ['daemonset'],
};

/** Series name → the label names it carries (histograms and summaries expanded to _bucket/_sum/_count). */
export type SeriesLabels = Map<string, Set<string>>;

interface ParsedFamily {
  name: string;
  type: string;
  metrics: { labels?: Record<string, string> }[];
}

/**
 * parse-prometheus-text-format folds a histogram's or summary's samples into one bucket map and drops their
 * labels when the family has more than one series (its flattenMetrics keeps labels only for unlabelled
 * families). So each text is parsed twice: once as is, for the family names and types, and once with
 * histogram and summary families declared untyped, which makes the parser keep each of their series
 * (_bucket, _sum, _count) as its own family with every sample's labels.
 */
export function seriesFromExposition(expositions: string[]): SeriesLabels {
  const series: SeriesLabels = new Map();
  const add = (name: string, labels: Iterable<string>) => {
    const set = series.get(name) ?? new Set<string>();
    for (const l of labels) set.add(l);
    series.set(name, set);
  };
  for (const text of expositions) {
    const families = parsePrometheusTextFormat(text) as ParsedFamily[];
    const untyped = text.replace(/^# TYPE (\S+) (histogram|summary)$/gm, '# TYPE $1 untyped');
    const labelsOf = new Map<string, Set<string>>(
      (parsePrometheusTextFormat(untyped) as ParsedFamily[]).map((f) => [f.name, new Set(f.metrics.flatMap((m) => Object.keys(m.labels ?? {})))]),
    );
    for (const family of families) {
      const labels = (name: string) => labelsOf.get(name) ?? [];
      switch (family.type) {
        case 'HISTOGRAM':
          add(`${family.name}_bucket`, [...labels(`${family.name}_bucket`), 'le']);
          add(`${family.name}_sum`, labels(`${family.name}_sum`));
          add(`${family.name}_count`, labels(`${family.name}_count`));
          break;
        case 'SUMMARY':
          add(family.name, [...labels(family.name), 'quantile']);
          add(`${family.name}_sum`, labels(`${family.name}_sum`));
          add(`${family.name}_count`, labels(`${family.name}_count`));
          break;
        default:
          add(family.name, labels(family.name));
      }
    }
  }
  return series;
}

/** One metric use in one query: the series and the labels the query needs it to have. */
export interface Reference {
  where: string;
  metric: string;
  labels: string[];
}

export interface Query {
  where: string;
  expr: string;
}

/** Grafana's built-in interval variables, replaced by a duration so the text is plain PromQL. */
function substituteGrafanaVariables(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m');
}

function text(expr: string, node: SyntaxNode): string {
  return expr.slice(node.from, node.to);
}

function descendants(node: SyntaxNode, name: string): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let child = node.firstChild; child; child = child.nextSibling) {
    if (child.name === name) out.push(child);
    out.push(...descendants(child, name));
  }
  return out;
}

/** The metric uses of one PromQL expression. Throws on a syntax error. */
export function promqlReferences(query: Query): Reference[] {
  const expr = substituteGrafanaVariables(query.expr);
  const tree = parser.parse(expr);
  const errors: string[] = [];
  tree.iterate({ enter: (n) => { if (n.type.isError) errors.push(`at ${n.from}: ${JSON.stringify(expr.slice(Math.max(0, n.from - 10), n.to + 10))}`); } });
  if (errors.length > 0) throw new Error(`${query.where}: PromQL syntax error ${errors.join(', ')} in ${expr}`);

  // Lezer hands out a new node object on every access: key selectors by their position.
  const at = (n: SyntaxNode) => `${n.from}:${n.to}`;
  const refs = new Map<string, Reference>();
  const root = tree.topNode;
  for (const selector of descendants(root, 'VectorSelector')) {
    const id = selector.getChild('Identifier');
    const matchers = selector.getChild('LabelMatchers');
    const labels = matchers ? descendants(matchers, 'LabelName').map((n) => text(expr, n)) : [];
    if (!id) throw new Error(`${query.where}: a selector without a metric name (${text(expr, selector)}) can't be checked`);
    refs.set(at(selector), { where: query.where, metric: text(expr, id), labels });
  }
  // by (...) / without (...) on an aggregation, and on (...) / ignoring (...) on a binary operation, need the
  // label on every selector they apply to.
  const scoped = (owner: SyntaxNode, modifier: SyntaxNode | null) => {
    if (!modifier) return;
    const grouping = modifier.getChild('GroupingLabels');
    if (!grouping) return;
    const names = grouping.getChildren('LabelName').map((n) => text(expr, n));
    for (const selector of descendants(owner, 'VectorSelector')) refs.get(at(selector))?.labels.push(...names);
  };
  for (const agg of descendants(root, 'AggregateExpr')) scoped(agg, agg.getChild('AggregateModifier'));
  for (const bin of descendants(root, 'BinaryExpr')) scoped(bin, bin.getChild('MatchingModifierClause'));
  return [...refs.values()].map((r) => ({ ...r, labels: [...new Set(r.labels)].filter((l) => l !== '__name__').sort() }));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/** Every PromQL query of a Grafana dashboard: panel targets (rows included) and query variables. */
export function dashboardQueries(dashboardPath: string): Query[] {
  const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8')) as Json;
  const queries: Query[] = [];
  const visit = (panels: Json[] | undefined) => {
    for (const panel of panels ?? []) {
      for (const target of panel.targets ?? []) {
        if (typeof target.expr === 'string') queries.push({ where: `dashboard panel "${panel.title}" (${target.refId ?? '?'})`, expr: target.expr });
      }
      visit(panel.panels);
    }
  };
  visit(dashboard.panels);
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type !== 'query') continue;
    const q = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    const m = /^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/.exec(String(q ?? '').trim());
    if (!m) throw new Error(`dashboard variable ${variable.name}: only label_values(<selector>, <label>) queries are supported, got ${q}`);
    queries.push({ where: `dashboard variable "${variable.name}"`, expr: `count by (${m[2]}) (${m[1]})` });
  }
  return queries;
}

/** Every rule expression of a PrometheusRule object (or a plain Prometheus rule file with `groups:`). */
export function alertQueries(alertsPath: string): Query[] {
  const doc = parseYaml(readFileSync(alertsPath, 'utf8')) as Json;
  const groups: Json[] = doc?.spec?.groups ?? doc?.groups ?? [];
  return groups.flatMap((g) => (g.rules as Json[]).map((r) => ({ where: `rule ${r.alert ?? r.record} (group ${g.name})`, expr: String(r.expr) })));
}

export interface ContractResult {
  references: Reference[];
  /** Empty when every reference resolves. */
  problems: string[];
}

/**
 * Checks the dashboard and the alerts against exposition text (one string per /metrics scrape).
 * Recording rules in the alerts file count as series too.
 */
export function checkMetricsReferenced(exposition: string[], dashboardPath: string, alertsPath: string): ContractResult {
  const series = seriesFromExposition(exposition);
  const recorded = new Map<string, Set<string>>();
  const doc = parseYaml(readFileSync(alertsPath, 'utf8')) as Json;
  for (const g of (doc?.spec?.groups ?? doc?.groups ?? []) as Json[]) {
    for (const r of g.rules as Json[]) {
      if (r.record) recorded.set(String(r.record), new Set([...promqlReferences({ where: r.record, expr: String(r.expr) }).flatMap((x) => x.labels), ...Object.keys(r.labels ?? {})]));
    }
  }
  const problems: string[] = [];
  const references: Reference[] = [];
  for (const query of [...dashboardQueries(dashboardPath), ...alertQueries(alertsPath)]) {
    let refs: Reference[];
    try {
      refs = promqlReferences(query);
    } catch (err) {
      problems.push((err as Error).message);
      continue;
    }
    if (refs.length === 0) problems.push(`${query.where}: uses no metric`);
    for (const ref of refs) {
      references.push(ref);
      const own = OWN_PREFIXES.some((p) => ref.metric.startsWith(p));
      const known = series.get(ref.metric) ?? recorded.get(ref.metric) ?? (own ? undefined : EXTERNAL_SERIES[ref.metric] && new Set(EXTERNAL_SERIES[ref.metric]));
      if (!known) {
        problems.push(`${ref.where}: metric ${ref.metric} ${own ? 'is not exposed by the operator or the agent' : 'is neither ours nor a known external series'}`);
        continue;
      }
      const missing = ref.labels.filter((l) => !known.has(l) && !(TARGET_LABELS as readonly string[]).includes(l));
      if (missing.length > 0) problems.push(`${ref.where}: ${ref.metric} has no label ${missing.join(', ')} (it has: ${[...known].sort().join(', ') || 'none'})`);
    }
  }
  return { references, problems };
}
