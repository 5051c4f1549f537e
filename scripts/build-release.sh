#!/usr/bin/env bash
# Builds the release addon completion-port.linux-<arch>-gnu.node next to
# binding.js for x64 or arm64, linked against the glibc 2.17 sysroot of the
# napi-rs gcc toolchains, and fails if it needs a newer glibc than 2.17.
# Usage: scripts/build-release.sh x64|arm64
# Needs: bash scripts/install-release-toolchain.sh build
set -euo pipefail
shopt -s inherit_errexit

# shellcheck source=release-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"

if [ $# -ne 1 ]; then
  echo "usage: $0 x64|arm64" >&2
  exit 2
fi
arch=$1
triple=$(rust_target_for_arch "$arch")

if [ "$(uname -m)" != x86_64 ]; then
  echo "build-release: the glibc $GLIBC_FLOOR_MAX toolchains run on x86-64 hosts only, and this host is $(uname -m)." >&2
  exit 1
fi

toolchain=$(toolchain_dir "$triple")
if [ ! -e "$toolchain/.complete" ]; then
  echo "build-release: the gcc toolchain for $triple is not installed in $toolchain. Run: bash scripts/install-release-toolchain.sh build" >&2
  exit 1
fi

# Cargo reads the linker from CARGO_TARGET_<TRIPLE>_LINKER, and cc-rs (used by
# crates with C code) reads CC_<triple> and AR_<triple>.
triple_upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
triple_lower=${triple//-/_}
export "CARGO_TARGET_${triple_upper}_LINKER=$toolchain/bin/$triple-gcc"
export "CC_${triple_lower}=$toolchain/bin/$triple-gcc"
export "AR_${triple_lower}=$toolchain/bin/$triple-ar"

# 'rustup target add' needs to download the target's std, which not every host
# can, so the arm64 build falls back to Debian's rustc-web and its
# libstd-rust-web-dev:arm64.
rust_has_std_for() {
  local libdir
  libdir=$("$1" --print target-libdir --target "$triple" 2>/dev/null) || return 1
  compgen -G "$libdir/libstd-*.rlib" >/dev/null
}
if ! rust_has_std_for rustc; then
  if [ -x /usr/bin/rustc ] && rust_has_std_for /usr/bin/rustc; then
    # A folder of links puts Debian's cargo, rustc and rustdoc ahead of the
    # rustup proxies for every cargo call, including napi's 'cargo metadata'.
    debian_rust_bin=$CP_CACHE_DIR/debian-rust/bin
    mkdir -p "$debian_rust_bin"
    for tool in cargo rustc rustdoc; do
      ln -sfn "/usr/bin/$tool" "$debian_rust_bin/$tool"
    done
    export PATH="$debian_rust_bin:$PATH"
    export CARGO="$debian_rust_bin/cargo" RUSTC="$debian_rust_bin/rustc" RUSTDOC="$debian_rust_bin/rustdoc"
  else
    echo "build-release: no Rust standard library for $triple. Run 'rustup target add $triple', or on Debian 12: bash scripts/install-release-toolchain.sh build" >&2
    exit 1
  fi
fi

# A target folder of its own keeps these builds, which use another linker and
# possibly another rustc, from invalidating the cache of 'npm run build'.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CP_ROOT/target/release-glibc-$GLIBC_FLOOR_MAX}

cd "$CP_ROOT"
echo "build-release: building $triple with $(rustc --version) and $toolchain/bin/$triple-gcc"
SECONDS=0
# 'npm run build' contains the napi build flags, so both builds name the
# addon and write native.d.ts the same way.
npm run --silent build -- --target "$triple"

addon=$CP_ROOT/completion-port.linux-$arch-gnu.node
case "$arch" in
  x64) expected_machine='Advanced Micro Devices X86-64' ;;
  arm64) expected_machine='AArch64' ;;
esac
machine=$(LC_ALL=C readelf --file-header "$addon" | sed -n 's/^ *Machine: *//p')
if [ "$machine" != "$expected_machine" ]; then
  echo "build-release: $addon is built for '$machine', expected '$expected_machine'" >&2
  exit 1
fi
check_glibc_floor "$addon"
echo "build-release: built $(basename "$addon") in ${SECONDS}s"
