// Bytes allocated through glibc malloc, from mallinfo2(3) (glibc 2.33 and
// later). Rust code uses the system allocator unless it sets another global
// allocator, and neither the core crate nor the binding does, so this counts
// the port's native memory. V8 maps its heap with mmap directly, so the
// JavaScript heap is not in it.

import koffi from 'koffi'

const libc = koffi.load('libc.so.6')

/** struct mallinfo2: ten size_t fields. */
const MALLINFO2_FIELDS = [
  'arena',
  'ordblks',
  'smblks',
  'hblks',
  'hblkhd',
  'usmblks',
  'fsmblks',
  'uordblks',
  'fordblks',
  'keepcost',
] as const

const Mallinfo2 = koffi.struct('mallinfo2', Object.fromEntries(MALLINFO2_FIELDS.map((field) => [field, 'size_t'])))

const mallinfo2 = libc.func('mallinfo2', Mallinfo2, [])

type Mallinfo2Result = Record<(typeof MALLINFO2_FIELDS)[number], number | bigint>

/**
 * Returns the bytes in use in every malloc arena: blocks from the arenas
 * (`uordblks`) plus blocks that malloc mapped on their own (`hblkhd`).
 */
export function mallocInUseBytes(): number {
  const info = mallinfo2() as Mallinfo2Result
  return Number(info.uordblks) + Number(info.hblkhd)
}
