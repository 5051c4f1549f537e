// Smoke test of an installed completion-port package, run by
// verify-package.sh from the root of a consumer project that installed the
// packed tarballs. Loads the package through require and import, checks that
// the addon came from the platform package, and waits for one readable socket.
// Usage: node package-smoke-test.mjs x64|arm64

import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import net from 'node:net'
import { join } from 'node:path'

const DEADLINE_MS = 30_000
const MESSAGE = 'ping'

const expectedArch = process.argv[2]
assert.equal(process.arch, expectedArch, `expected a ${expectedArch} Node.js, but process.arch is ${process.arch}`)

const require = createRequire(join(process.cwd(), 'package.json'))
const required = require('completion-port')
const imported = await import('completion-port')

assert.equal(imported.default, required, 'import() and require() returned different module instances')
const missingNamedExports = Object.keys(required).filter((name) => !(name in imported))
assert.deepEqual(missingNamedExports, [], 'exports missing from the ES module view of the package')

// binding.js prefers an addon next to itself, so an addon in the platform
// package proves that npm installed and resolved the optional dependency.
const platformPackage = `completion-port-linux-${expectedArch}-gnu`
const addonPath = require.resolve(platformPackage)
const loadedAddons = process.report.getReport().sharedObjects.filter((file) => file.endsWith('.node'))
assert.ok(loadedAddons.includes(addonPath), `expected ${addonPath} to be loaded, loaded addons: ${loadedAddons.join(', ')}`)

const { CompletionPort, CompletionPortEpollAction, EPOLLIN } = imported
const port = new CompletionPort()

// pauseOnConnect keeps libuv from reading the accepted socket, so its data
// stays queued and epoll reports the socket as readable.
const server = net.createServer({ pauseOnConnect: true })
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const client = net.connect(server.address().port, '127.0.0.1')
const [accepted] = await once(server, 'connection')
const fd = accepted._handle.fd
assert.ok(Number.isInteger(fd), `expected a descriptor for the accepted socket, got ${fd}`)
assert.ok(fd >= 0, `expected a descriptor for the accepted socket, got ${fd}`)

const completion = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`no completion within ${DEADLINE_MS} ms`)), DEADLINE_MS)
  port.add(fd, EPOLLIN, (action, events) => {
    clearTimeout(timer)
    resolve({ action, events })
  })
})
client.write(MESSAGE)
const { action, events } = await completion
assert.equal(action, CompletionPortEpollAction.EPOLLIN, `expected action EPOLLIN (1), got ${action}`)
assert.ok((events & EPOLLIN) !== 0, `expected EPOLLIN in events, got 0x${events.toString(16)}`)

accepted.resume()
const [data] = await once(accepted, 'data')
assert.equal(data.toString(), MESSAGE)

port.decRef()
assert.equal(port.closed, true, 'port is still open after the last decRef')
client.destroy()
accepted.destroy()
server.close()

console.log(`package smoke test passed: Node.js ${process.version} (${process.arch}) loaded ${addonPath}`)
