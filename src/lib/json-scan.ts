/**
 * @module lib/json-scan
 * Measuring hostile JSON without recursion, so that nothing recursive (JSON.parse, the
 * normalisation walk, JSON.stringify for hashing and for the bus) ever sees an input deeper or
 * larger than the ingest limits (issue 14: one 200 KB item of 100,000 nested arrays overflowed the
 * stack in JSON.stringify, answered 500 for the whole batch, and stalled every other org's
 * requests while it ran; a 10 MiB body of 5 million `[` costs about 2 s and 300 MB in JSON.parse
 * alone under Bun).
 *
 * Two measures, both iterative and linear in the input, both stopping their detailed work at
 * the first limit crossed:
 *
 * - `scanValue` reads one JSON value in text (a batch item, an `arguments_json` string) and
 *   finds where it ends, its depth and its number of values, *before* it is parsed;
 * - `measureValue` does the same for a value that is already parsed (callers that hold one).
 *
 * Depth is counted the way the normalisation walk counts it: the measured value is level 0, and
 * a container at level `maxDepth` or deeper is refused, with the JSON Pointer of that container.
 */

export interface ShapeLimits {
  /** A container at this level or deeper (the measured value is level 0) is refused. */
  maxDepth: number
  /** Values of any kind (containers, strings, numbers, literals; object keys not counted). */
  maxValues: number
  /** Characters of JSON text (`scanValue`), or string characters plus 8 per value (`measureValue`). */
  maxChars: number
}

/** A bounded set: these are also the `reason` label of `quint_ingest_rejected_total`. */
export type ShapeCode = 'too_deep' | 'too_many_values' | 'too_large'

export interface ShapeProblem {
  code: ShapeCode
  /** JSON Pointer relative to the measured value ('' for the value itself). */
  pointer: string
  reason: string
}

/** Broken JSON structure (unterminated string, unbalanced brackets, nothing where a value belongs). */
export class JsonShapeError extends Error {
  override name = 'JsonShapeError'
  readonly offset: number
  constructor(message: string, offset: number) {
    super(`${message} at character ${offset}`)
    this.offset = offset
  }
}

export interface ScanResult {
  /** Index just after the value. */
  end: number
  problem: ShapeProblem | null
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const COLON = 0x3a
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d

export function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09
}

export function skipSpace(text: string, i: number): number {
  while (i < text.length && isJsonSpace(text.charCodeAt(i))) i++
  return i
}

/** Index just after the string whose opening quote is at `i`. */
export function skipString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j)
    if (c === BACKSLASH) j++
    else if (c === QUOTE) return j + 1
  }
  throw new JsonShapeError('unterminated string', i)
}

function isDelimiter(c: number): boolean {
  return c === COMMA || c === CLOSE_ARRAY || c === CLOSE_OBJECT || c === COLON || isJsonSpace(c)
}

export function pointerSegment(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1')
}

function decodeKey(text: string, start: number, end: number): string {
  try {
    const k: unknown = JSON.parse(text.slice(start, end))
    return typeof k === 'string' ? k : text.slice(start + 1, end - 1)
  } catch {
    return text.slice(start + 1, end - 1)
  }
}

/**
 * Scans the JSON value starting at `start` (a non-space character) without building it. Only
 * structure is checked (strings closed, brackets balanced and matching); the characters of
 * numbers and literals are left to JSON.parse. Once a limit is crossed the rest is only skipped
 * (a depth counter, no more bookkeeping), so the cost stays one pass whatever the input.
 */
export function scanValue(text: string, start: number, limits: ShapeLimits): ScanResult {
  const { maxDepth, maxValues, maxChars } = limits
  // Per open level up to maxDepth: container kind, current index (arrays) or key span (objects).
  const isObject: boolean[] = []
  const index: number[] = []
  const keyStart: number[] = []
  const keyEnd: number[] = []
  let depth = 0
  let values = 0
  let expectKey = false
  let problem: ShapeProblem | null = null
  let i = start
  const pointerTo = (levels: number): string => {
    let p = ''
    for (let d = 0; d < levels; d++) {
      p += `/${isObject[d] ? pointerSegment(decodeKey(text, keyStart[d]!, keyEnd[d]!)) : String(index[d])}`
    }
    return p
  }
  for (;;) {
    if (i >= text.length) throw new JsonShapeError('unexpected end of JSON', i)
    const c = text.charCodeAt(i)
    if (isJsonSpace(c)) {
      i++
      continue
    }
    if (c === QUOTE) {
      const end = skipString(text, i)
      if (depth > 0 && depth <= maxDepth && isObject[depth - 1] && expectKey) {
        keyStart[depth - 1] = i
        keyEnd[depth - 1] = end
        expectKey = false
      } else {
        values++
      }
      i = end
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      values++
      if (problem === null && depth >= maxDepth) {
        problem = { code: 'too_deep', pointer: pointerTo(depth), reason: `is nested deeper than ${maxDepth} levels` }
      }
      if (depth < maxDepth + 1) {
        isObject[depth] = c === OPEN_OBJECT
        index[depth] = 0
      }
      depth++
      expectKey = c === OPEN_OBJECT
      i++
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      if (depth === 0) throw new JsonShapeError('unexpected closing bracket', i)
      depth--
      if (depth <= maxDepth && isObject[depth] !== (c === CLOSE_OBJECT)) throw new JsonShapeError('mismatched bracket', i)
      expectKey = false
      i++
    } else if (c === COMMA) {
      if (depth === 0) throw new JsonShapeError('unexpected comma', i)
      if (depth <= maxDepth) {
        if (isObject[depth - 1]) expectKey = true
        else index[depth - 1]!++
      }
      i++
    } else if (c === COLON) {
      if (depth === 0) throw new JsonShapeError('unexpected colon', i)
      expectKey = false
      i++
    } else {
      // A number or literal: its characters are checked by JSON.parse.
      values++
      i++
      while (i < text.length && !isDelimiter(text.charCodeAt(i))) i++
    }
    if (problem === null && values > maxValues) {
      problem = { code: 'too_many_values', pointer: '', reason: `holds more than ${maxValues} values` }
    }
    if (depth === 0) break
  }
  if (problem === null && i - start > maxChars) {
    problem = { code: 'too_large', pointer: '', reason: `exceeds ${maxChars} bytes` }
  }
  return { end: i, problem }
}

/**
 * The same limits for a value already parsed, walked with an explicit stack of open containers
 * (at most `maxDepth` of them): at most `maxValues + 1` values are visited and no container at
 * `maxDepth` is entered, so even a value too deep for the call stack is measured in bounded time.
 */
export function measureValue(root: unknown, limits: ShapeLimits): ShapeProblem | null {
  const { maxDepth, maxValues, maxChars } = limits
  interface Frame {
    container: unknown[] | Record<string, unknown>
    keys: string[] | null
    next: number
  }
  const frames: Frame[] = []
  const pointer = () => frames.map((f) => `/${f.keys ? pointerSegment(f.keys[f.next - 1]!) : String(f.next - 1)}`).join('')
  let values = 0
  let size = 0
  let v: unknown = root
  for (;;) {
    values++
    size += 8
    if (values > maxValues) return { code: 'too_many_values', pointer: '', reason: `holds more than ${maxValues} values` }
    if (typeof v === 'string') size += v.length
    else if (v !== null && typeof v === 'object') {
      if (frames.length >= maxDepth) {
        return { code: 'too_deep', pointer: pointer(), reason: `is nested deeper than ${maxDepth} levels` }
      }
      const keys = Array.isArray(v) ? null : Object.keys(v)
      if ((keys ?? (v as unknown[])).length > maxValues) {
        return { code: 'too_many_values', pointer: '', reason: `holds more than ${maxValues} values` }
      }
      if (keys) for (const k of keys) size += k.length
      frames.push({ container: v as Frame['container'], keys, next: 0 })
    }
    if (size > maxChars) return { code: 'too_large', pointer: '', reason: `exceeds ${maxChars} bytes` }
    // The next value: the following member of the innermost container that has one left.
    let top = frames.at(-1)
    while (top && top.next >= (top.keys ?? (top.container as unknown[])).length) {
      frames.pop()
      top = frames.at(-1)
    }
    if (!top) return null
    const i = top.next++
    v = top.keys ? (top.container as Record<string, unknown>)[top.keys[i]!] : (top.container as unknown[])[i]
  }
}
