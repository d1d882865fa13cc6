// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** The operator and the agent share code only through lib/; they never import each other. */
const forbid = (other) => ({
  'no-restricted-imports': [
    'error',
    { patterns: [{ group: [`**/${other}/**`, `**/${other}`], message: `operator/ and agent/ never import each other; share code through lib/.` }] },
  ],
});

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'bench-results/', '.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  { files: ['operator/**/*.ts'], rules: forbid('agent') },
  { files: ['agent/**/*.ts'], rules: forbid('operator') },
  // dev/ (the emulator, the local cluster, the benchmarks) is what the e2e suites stand on, never the reverse;
  // e2e/import-graph_test.ts checks the whole folder graph.
  { files: ['dev/**/*.ts'], rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/e2e/**'], message: 'dev/ never imports e2e/; move what both need into dev/.' }] }] } },
  { files: ['lib/**/*.ts'], rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/operator/**', '**/agent/**', '**/e2e/**', '**/dev/**'], message: 'lib/ is imported by both programs and depends on neither.' }] }] } },
);
