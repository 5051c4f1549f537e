#!/usr/bin/env bash
# Runs the ava suite and the demo against completion-port.linux-arm64-gnu.node:
# natively on an arm64 host, or on an x86-64 host with the arm64 Node.js from
# the cache, which the kernel runs under qemu-aarch64 through binfmt_misc.
# Usage: scripts/test-arm64.sh [ava arguments...]
# Needs: npm run build:arm64, and on x86-64: bash scripts/install-release-toolchain.sh test
set -euo pipefail
shopt -s inherit_errexit

# shellcheck source=release-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"

# Platform-specific packages that the suite loads: esbuild's binary (used by
# tsx) and koffi's addon. npm installs only the host's variant of each.
ARM64_TEST_PACKAGES=(@esbuild/linux-arm64 @koromix/koffi-linux-arm64)

addon_name=completion-port.linux-arm64-gnu.node

cd "$CP_ROOT"
if [ ! -f "$addon_name" ]; then
  echo "test-arm64: $CP_ROOT/$addon_name is missing. Build it first: npm run build:arm64" >&2
  exit 1
fi

# Prints the version and integrity that package-lock.json records for a package.
locked_version_and_integrity() {
  node -e '
    const lock = require(process.argv[1])
    const entry = lock.packages["node_modules/" + process.argv[2]]
    if (!entry) {
      console.error(`test-arm64: package-lock.json has no entry for ${process.argv[2]}`)
      process.exit(1)
    }
    console.log(entry.version, entry.integrity)
  ' "$CP_ROOT/package-lock.json" "$1"
}

# Adds the arm64 variant of each package in ARM64_TEST_PACKAGES to
# node_modules, at the version and integrity in package-lock.json, as npm
# itself would on an arm64 host. Skips packages already there.
install_arm64_test_packages() {
  local name version integrity dest installed work pack_json actual
  for name in "${ARM64_TEST_PACKAGES[@]}"; do
    read -r version integrity < <(locked_version_and_integrity "$name")
    dest=node_modules/$name
    installed=$(node -p 'require(process.argv[1]).version' "$CP_ROOT/$dest/package.json" 2>/dev/null || true)
    if [ "$installed" = "$version" ]; then
      continue
    fi
    echo "test-arm64: adding $name@$version to node_modules"
    work=$(mktemp -d)
    pack_json=$(cd "$work" && npm pack --silent --json "$name@$version")
    actual=$(node -p 'JSON.parse(process.argv[1])[0].integrity' "$pack_json")
    if [ "$actual" != "$integrity" ]; then
      echo "test-arm64: integrity mismatch for $name@$version: package-lock.json has $integrity, the registry sent $actual" >&2
      rm -rf "$work"
      return 1
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -xzf "$work"/*.tgz -C "$dest" --strip-components=1
    rm -rf "$work"
  done
}

SECONDS=0
if [ "$(uname -m)" = aarch64 ]; then
  npx ava "$@"
  # predemo builds the addon for the host, which is already built here.
  npm run --ignore-scripts demo
  echo "test-arm64: suite and demo passed natively in ${SECONDS}s"
  exit 0
fi

if [ ! -e "$NODE_ARM64_DIR/.complete" ]; then
  echo "test-arm64: the arm64 Node.js is not installed in $NODE_ARM64_DIR. Run: bash scripts/install-release-toolchain.sh test" >&2
  exit 1
fi
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  echo "test-arm64: qemu-aarch64 is not registered in /proc/sys/fs/binfmt_misc, so arm64 child processes (ava workers, esbuild, fixtures) cannot start. Run as root: bash scripts/install-release-toolchain.sh test" >&2
  exit 1
fi

install_arm64_test_packages

# npm itself runs on the host's Node.js, and the scripts that npm starts find
# the arm64 node first on PATH.
host_node=$(command -v node)
npm_cli=$(readlink -f "$(command -v npm)")
export PATH="$NODE_ARM64_DIR/bin:$PATH"

# Fail early unless the arm64 addon is the one that binding.js loads.
node -e '
  require("./binding.js")
  const expected = require("node:path").resolve(process.argv[1])
  const loaded = process.report.getReport().sharedObjects.filter((file) => file.endsWith(".node"))
  if (process.arch !== "arm64" || !loaded.includes(expected)) {
    console.error(`test-arm64: expected ${expected} in an arm64 process, but process.arch is ${process.arch} and the loaded addons are: ${loaded.join(", ") || "none"}`)
    process.exit(1)
  }
  console.log(`test-arm64: Node.js ${process.version} (${process.arch}) loads ${expected}`)
' "$addon_name"

# A new arm64 Node.js process with tsx took 4 to 7 s to start under qemu on a
# 2-core host that was also building, against 0.5 s natively. So this run
# raises ava's inactivity timeout and sets a factor for the suite's own
# deadlines, which __test__/helpers.ts must multiply them by.
export COMPLETION_PORT_TEST_DEADLINE_SCALE=${COMPLETION_PORT_TEST_DEADLINE_SCALE:-4}
node node_modules/ava/entrypoints/cli.mjs --timeout=4m "$@"
# predemo builds the addon for the host (x64), which this run does not use.
"$host_node" "$npm_cli" run --ignore-scripts demo
echo "test-arm64: suite and demo passed under qemu-aarch64 in ${SECONDS}s"
