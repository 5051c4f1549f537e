// The echo demo (examples/echo-demo.ts) with node:net sockets: its server,
// clients and checks run unchanged, but its socket module is replaced by
// benchmark/lib/net-socket.ts before the demo loads. Takes the demo's
// options and prints the demo's output.

import Module from 'node:module'

import * as netSocket from '../lib/net-socket'

const demoSocketModule = require.resolve('../../examples/nonblocking-socket')
const substitute = new Module(demoSocketModule, module)
substitute.filename = demoSocketModule
substitute.exports = netSocket
substitute.loaded = true
require.cache[demoSocketModule] = substitute

process.on('exit', () => {
  if (netSocket.listenerCount === 0) {
    console.error('the echo demo created no node:net listener: its socket module was not replaced')
    process.exitCode = 1
  }
})

require('../../examples/echo-demo')
