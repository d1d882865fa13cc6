/**
 * Azure ABAC role-assignment conditions (conditionVersion 2.0), the subset used to constrain delegated role
 * assignment management: `ActionMatches{'…'}`, `@Request[…]` / `@Resource[…]` attributes with the
 * `Guid*` and `String*` operators and the `ForAnyOfAnyValues` family of quantifiers, `!` / `NOT`, `AND`, `OR`
 * and parentheses. Keywords and operators are case-insensitive, as in Azure.
 *
 * A condition restricts the role assignment that carries it: its permissions apply to a request only when the
 * condition evaluates to true for that request. An attribute the request does not carry has no values, so
 * any `ForAny…` test on it is false (fail closed).
 */

/** Attribute values by `@Request[name]` / `@Resource[name]` (name lower-cased). */
export interface ConditionRequest {
  action: string;
  request?: Record<string, string[]>;
  resource?: Record<string, string[]>;
}

export type Condition = (req: ConditionRequest) => boolean;

export class ConditionSyntaxError extends Error {}

type Token = { kind: 'lparen' | 'rparen' | 'not' | 'and' | 'or' } | { kind: 'action'; pattern: string } | { kind: 'attr'; source: 'request' | 'resource'; name: string } | { kind: 'word'; text: string } | { kind: 'set'; values: string[] } | { kind: 'value'; text: string };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const rest = () => src.slice(i);
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '(' || c === ')') {
      out.push({ kind: c === '(' ? 'lparen' : 'rparen' });
      i++;
      continue;
    }
    if (c === '!') {
      out.push({ kind: 'not' });
      i++;
      continue;
    }
    let m: RegExpExecArray | null;
    if ((m = /^ActionMatches\s*\{\s*'([^']*)'\s*\}/i.exec(rest()))) {
      out.push({ kind: 'action', pattern: m[1]! });
      i += m[0].length;
      continue;
    }
    if ((m = /^@(Request|Resource)\[([^\]]+)\]/i.exec(rest()))) {
      out.push({ kind: 'attr', source: m[1]!.toLowerCase() as 'request' | 'resource', name: m[2]!.trim().toLowerCase() });
      i += m[0].length;
      continue;
    }
    if (c === '{') {
      const end = src.indexOf('}', i);
      if (end < 0) throw new ConditionSyntaxError('unterminated "{"');
      const values = src
        .slice(i + 1, end)
        .split(',')
        .map((v) => v.trim().replace(/^'(.*)'$/, '$1'))
        .filter((v) => v !== '');
      out.push({ kind: 'set', values });
      i = end + 1;
      continue;
    }
    if (c === "'") {
      const end = src.indexOf("'", i + 1);
      if (end < 0) throw new ConditionSyntaxError('unterminated string');
      out.push({ kind: 'value', text: src.slice(i + 1, end) });
      i = end + 1;
      continue;
    }
    if ((m = /^[0-9a-fA-F-]{36}/.exec(rest()))) {
      out.push({ kind: 'value', text: m[0] });
      i += m[0].length;
      continue;
    }
    if ((m = /^[A-Za-z][A-Za-z0-9:]*/.exec(rest()))) {
      const w = m[0];
      const lw = w.toLowerCase();
      if (lw === 'and' || lw === '&&') out.push({ kind: 'and' });
      else if (lw === 'or') out.push({ kind: 'or' });
      else if (lw === 'not') out.push({ kind: 'not' });
      else out.push({ kind: 'word', text: w });
      i += w.length;
      continue;
    }
    if (rest().startsWith('&&')) {
      out.push({ kind: 'and' });
      i += 2;
      continue;
    }
    if (rest().startsWith('||')) {
      out.push({ kind: 'or' });
      i += 2;
      continue;
    }
    throw new ConditionSyntaxError(`unexpected "${c}" at ${i}`);
  }
  return out;
}

const QUANTIFIERS = ['foranyofanyvalues', 'forallofanyvalues', 'foranyofallvalues', 'forallofallvalues'] as const;
type Quantifier = (typeof QUANTIFIERS)[number];

function comparator(op: string): (a: string, b: string) => boolean {
  switch (op.toLowerCase()) {
    case 'guidequals':
      return (a, b) => a.toLowerCase() === b.toLowerCase();
    case 'guidnotequals':
      return (a, b) => a.toLowerCase() !== b.toLowerCase();
    case 'stringequals':
      return (a, b) => a === b;
    case 'stringnotequals':
      return (a, b) => a !== b;
    case 'stringequalsignorecase':
      return (a, b) => a.toLowerCase() === b.toLowerCase();
    case 'stringnotequalsignorecase':
      return (a, b) => a.toLowerCase() !== b.toLowerCase();
    default:
      throw new ConditionSyntaxError(`unsupported operator "${op}"`);
  }
}

/** Glob over actions, case-insensitive, `*` for any run of characters (as role definitions match actions). */
function actionMatches(pattern: string, action: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*') + '$', 'i');
  return re.test(action);
}

/** Parses a condition; throws ConditionSyntaxError on anything outside the supported grammar. */
export function parseCondition(source: string): Condition {
  const tokens = tokenize(source);
  let pos = 0;
  const peek = () => tokens[pos];
  const next = () => tokens[pos++];

  /** A left-associative chain of `operand`s joined by the `kind` operator. */
  function chain(kind: 'or' | 'and', operand: () => Condition, join: (l: Condition, r: Condition) => Condition): Condition {
    let left = operand();
    while (peek()?.kind === kind) {
      next();
      left = join(left, operand());
    }
    return left;
  }
  function orExpr(): Condition {
    return chain('or', andExpr, (l, r) => (q) => l(q) || r(q));
  }
  function andExpr(): Condition {
    return chain('and', unary, (l, r) => (q) => l(q) && r(q));
  }
  function unary(): Condition {
    const t = peek();
    if (t?.kind === 'not') {
      next();
      const inner = unary();
      return (q) => !inner(q);
    }
    return primary();
  }
  function primary(): Condition {
    const t = next();
    if (!t) throw new ConditionSyntaxError('unexpected end of condition');
    if (t.kind === 'lparen') {
      const inner = orExpr();
      if (next()?.kind !== 'rparen') throw new ConditionSyntaxError('missing ")"');
      return inner;
    }
    if (t.kind === 'action') return (q) => actionMatches(t.pattern, q.action);
    if (t.kind === 'attr') {
      const opTok = next();
      if (opTok?.kind !== 'word') throw new ConditionSyntaxError(`expected an operator after @${t.source}[${t.name}]`);
      const [first, second] = opTok.text.split(':');
      const quantifier = (second ? first!.toLowerCase() : undefined) as Quantifier | undefined;
      if (quantifier && !QUANTIFIERS.includes(quantifier)) throw new ConditionSyntaxError(`unsupported quantifier "${first}"`);
      const cmp = comparator(second ?? first!);
      const valueTok = next();
      const right = valueTok?.kind === 'set' ? valueTok.values : valueTok?.kind === 'value' ? [valueTok.text] : valueTok?.kind === 'word' ? [valueTok.text] : undefined;
      if (!right) throw new ConditionSyntaxError(`expected a value after ${opTok.text}`);
      return (q) => {
        const left = (t.source === 'request' ? q.request : q.resource)?.[t.name] ?? [];
        if (left.length === 0) return false;
        switch (quantifier ?? 'foranyofanyvalues') {
          case 'foranyofanyvalues':
            return left.some((a) => right.some((b) => cmp(a, b)));
          case 'forallofanyvalues':
            return left.every((a) => right.some((b) => cmp(a, b)));
          case 'foranyofallvalues':
            return left.some((a) => right.every((b) => cmp(a, b)));
          case 'forallofallvalues':
            return left.every((a) => right.every((b) => cmp(a, b)));
        }
      };
    }
    throw new ConditionSyntaxError(`unexpected token ${JSON.stringify(t)}`);
  }

  const expr = orExpr();
  if (pos !== tokens.length) throw new ConditionSyntaxError(`unexpected token ${JSON.stringify(tokens[pos])}`);
  return expr;
}

/** Attribute names the role-assignment actions carry. */
export const RA_ATTR = {
  roleDefinitionId: 'microsoft.authorization/roleassignments:roledefinitionid',
  principalId: 'microsoft.authorization/roleassignments:principalid',
  principalType: 'microsoft.authorization/roleassignments:principaltype',
} as const;
