'use strict'

// Loads the native addon for this platform: the file built in this folder by
// `npm run build` when it exists, otherwise the prebuilt package that npm
// installed as an optional dependency.

const { existsSync } = require('node:fs')
const { join } = require('node:path')

const SUPPORTED_ARCHES = ['x64', 'arm64']

function isMusl() {
  const { glibcVersionRuntime } = process.report.getReport().header
  return !glibcVersionRuntime
}

function loadBinding() {
  const { platform, arch } = process
  const platformName = `${platform}-${arch}`

  if (platform !== 'linux') {
    throw new Error(
      `completion-port supports only Linux (epoll), but this is ${platformName}. ` +
        'Use it on linux-x64 or linux-arm64 with glibc.',
    )
  }
  if (!SUPPORTED_ARCHES.includes(arch)) {
    throw new Error(
      `completion-port has no prebuilt binary for ${platformName}. ` +
        'Supported: linux-x64-gnu and linux-arm64-gnu. To build from source, clone the ' +
        'repository and run `npm ci && npm run build` (needs Rust 1.88 or newer).',
    )
  }
  if (isMusl()) {
    throw new Error(
      `completion-port has no prebuilt binary for ${platformName} with musl libc. ` +
        'Supported: linux-x64-gnu and linux-arm64-gnu (glibc 2.17 or newer).',
    )
  }

  const triple = `linux-${arch}-gnu`
  const localFile = join(__dirname, `completion-port.${triple}.node`)
  if (existsSync(localFile)) {
    return require(localFile)
  }

  const packageName = `completion-port-${triple}`
  try {
    return require(packageName)
  } catch (error) {
    if (error && error.code === 'MODULE_NOT_FOUND' && String(error.message).includes(packageName)) {
      throw new Error(
        `completion-port could not find its native binary for ${platformName}: neither ` +
          `${localFile} nor the package ${packageName} is installed. npm installs that ` +
          'package as an optional dependency, so reinstall without --no-optional ' +
          '(or --omit=optional), or run `npm install ' +
          `${packageName}\`.`,
        { cause: error },
      )
    }
    throw error
  }
}

module.exports = loadBinding()
