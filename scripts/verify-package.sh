#!/usr/bin/env bash
# Packs the root package and the platform packages, and installs the tarballs
# into a new consumer project per architecture, with npm offline and no cargo
# or rustc on PATH. Then runs package-smoke-test.mjs in each project: with the
# host's Node.js for x64, and with the arm64 Node.js under qemu-aarch64 for
# arm64. Fails if an addon requires a glibc newer than 2.17.
# Usage: scripts/verify-package.sh [x64] [arm64]   (default: both)
# Needs: npm run build:x64, npm run build:arm64, and on x86-64 for arm64:
# bash scripts/install-release-toolchain.sh test
set -euo pipefail
shopt -s inherit_errexit

# shellcheck source=release-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"

if [ $# -eq 0 ]; then
  set -- x64 arm64
fi
for arch in "$@"; do
  rust_target_for_arch "$arch" >/dev/null
done

host_arch=$(node -p process.arch)
host_node=$(command -v node)
npm_cli=$(readlink -f "$(command -v npm)")
version=$(node -p 'require(process.argv[1]).version' "$CP_ROOT/package.json")

SECONDS=0
work=$(mktemp -d "${TMPDIR:-/tmp}/completion-port-verify.XXXXXX")
cleanup() {
  local status=$?
  if [ "$status" -eq 0 ]; then
    rm -rf "$work"
  else
    echo "verify-package: failed. Kept $work for inspection." >&2
  fi
}
trap cleanup EXIT
mkdir "$work/tarballs" "$work/bin"

for arch in "$@"; do
  addon=$CP_ROOT/completion-port.linux-$arch-gnu.node
  if [ ! -f "$addon" ]; then
    echo "verify-package: $addon is missing. Build it first: npm run build:$arch" >&2
    exit 1
  fi
  check_glibc_floor "$addon"
done

# The root package must not ship an addon, because binding.js loads an addon
# next to itself before the platform package.
echo "verify-package: packing completion-port@$version and its platform packages"
mkdir "$work/root-as-packed" "$work/root"
(cd "$CP_ROOT" && npm pack --silent --pack-destination "$work/root-as-packed" >/dev/null)
root_files=$(tar -tzf "$work/root-as-packed/completion-port-$version.tgz")
if grep -q '\.node$' <<<"$root_files"; then
  echo "verify-package: the root package contains these addons. Remove them from 'files' in package.json:" >&2
  grep '\.node$' <<<"$root_files" >&2
  exit 1
fi
for file in package/index.js package/index.d.ts package/binding.js; do
  if ! grep -qx "$file" <<<"$root_files"; then
    echo "verify-package: the root package lacks ${file#package/}" >&2
    exit 1
  fi
done

# 'napi pre-publish' adds the platform packages to optionalDependencies at the
# root version before 'npm publish', so the packed root gets the same here.
# A package.json that already lists them must list them at that version.
tar -xzf "$work/root-as-packed/completion-port-$version.tgz" -C "$work/root" --strip-components=1
node -e '
  const fs = require("node:fs")
  const file = process.argv[1]
  const pkg = JSON.parse(fs.readFileSync(file, "utf8"))
  pkg.optionalDependencies ??= {}
  for (const arch of ["x64", "arm64"]) {
    const name = `completion-port-linux-${arch}-gnu`
    const listed = pkg.optionalDependencies[name]
    if (listed !== undefined && listed !== pkg.version) {
      console.error(`verify-package: package.json lists ${name}@${listed} in optionalDependencies, expected version ${pkg.version}`)
      process.exit(1)
    }
    pkg.optionalDependencies[name] = pkg.version
  }
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n")
' "$work/root/package.json"
(cd "$work/root" && npm pack --silent --ignore-scripts --pack-destination "$work/tarballs" >/dev/null)

for arch in x64 arm64; do
  name=completion-port-linux-$arch-gnu
  stage=$work/stage/$name
  mkdir -p "$stage"
  cp "$CP_ROOT/npm/linux-$arch-gnu/package.json" "$CP_ROOT/npm/linux-$arch-gnu/README.md" "$stage/"
  if [ -f "$CP_ROOT/completion-port.linux-$arch-gnu.node" ]; then
    cp "$CP_ROOT/completion-port.linux-$arch-gnu.node" "$stage/"
  fi
  (cd "$stage" && npm pack --silent --pack-destination "$work/tarballs" >/dev/null)
done

# A PATH with only what the consumer install and the smoke test run, so that
# neither can fall back to building the addon from source.
ln -s "$host_node" "$work/bin/node"
ln -s "$(command -v sh)" "$work/bin/sh"
if [ "$host_arch" = x64 ] && command -v qemu-aarch64 >/dev/null; then
  ln -s "$(command -v qemu-aarch64)" "$work/bin/qemu-aarch64"
fi
for tool in cargo rustc; do
  if PATH=$work/bin command -v "$tool" >/dev/null; then
    echo "verify-package: $tool is still on the restricted PATH $work/bin" >&2
    exit 1
  fi
done

for arch in "$@"; do
  name=completion-port-linux-$arch-gnu
  other_arch=$([ "$arch" = x64 ] && echo arm64 || echo x64)
  project=$work/consumer-$arch
  mkdir -p "$project"
  # overrides point both optional dependencies of the root package at the
  # local tarballs, so npm resolves them offline and applies its os/cpu/libc
  # filter as it would for the published packages.
  node -e '
    const [file, tarballs, version] = process.argv.slice(1)
    const pkg = {
      name: "completion-port-consumer",
      private: true,
      dependencies: { "completion-port": `file:${tarballs}/completion-port-${version}.tgz` },
      overrides: {
        "completion-port-linux-x64-gnu": `file:${tarballs}/completion-port-linux-x64-gnu-${version}.tgz`,
        "completion-port-linux-arm64-gnu": `file:${tarballs}/completion-port-linux-arm64-gnu-${version}.tgz`,
      },
    }
    require("node:fs").writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n")
  ' "$project/package.json" "$work/tarballs" "$version"
  cp "$CP_ROOT/scripts/package-smoke-test.mjs" "$project/"

  echo "verify-package: installing the tarballs for linux-$arch-gnu into $project"
  (cd "$project" && run_quiet env PATH="$work/bin" npm_config_cpu="$arch" npm_config_os=linux npm_config_libc=glibc \
    "$host_node" "$npm_cli" install --offline --no-audit --no-fund)
  if [ ! -f "$project/node_modules/$name/completion-port.linux-$arch-gnu.node" ]; then
    echo "verify-package: npm did not install $name with its addon into $project/node_modules" >&2
    exit 1
  fi
  if [ -e "$project/node_modules/completion-port-linux-$other_arch-gnu" ]; then
    echo "verify-package: npm installed completion-port-linux-$other_arch-gnu on linux-$arch, so its os/cpu/libc fields are wrong" >&2
    exit 1
  fi

  if [ "$arch" = "$host_arch" ]; then
    (cd "$project" && PATH=$work/bin node package-smoke-test.mjs "$arch")
  elif [ "$arch" = arm64 ] && [ "$host_arch" = x64 ]; then
    if [ ! -e "$NODE_ARM64_DIR/.complete" ] || [ ! -e "$work/bin/qemu-aarch64" ]; then
      echo "verify-package: qemu-aarch64 or the arm64 Node.js is missing. Run: bash scripts/install-release-toolchain.sh test" >&2
      exit 1
    fi
    (cd "$project" && PATH=$work/bin qemu-aarch64 "$NODE_ARM64" package-smoke-test.mjs "$arch")
  else
    echo "verify-package: cannot run a linux-$arch Node.js on this $host_arch host" >&2
    exit 1
  fi
done
echo "verify-package: $* verified in ${SECONDS}s"
