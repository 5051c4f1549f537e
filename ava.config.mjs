// Specs are TypeScript run through tsx. Each spec file runs in its own child
// process (workerThreads: false), so counts of threads and descriptors in
// /proc/self see only that file's ports.
export default {
  files: ['__test__/**/*.spec.ts'],
  extensions: { ts: 'commonjs' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  timeout: '60s',
}
