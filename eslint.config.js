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
  { files: ['lib/**/*.ts'], rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/operator/**', '**/agent/**', '**/e2e/**'], message: 'lib/ is imported by both programs and depends on neither.' }] }] } },
);
