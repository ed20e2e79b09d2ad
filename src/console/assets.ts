/**
 * @module console/assets
 * The console's files (issue 12), built by Bun's bundler from the HTML import `./ui/index.html`:
 *
 * - In the compiled executable (`bun build --compile`), the bundler already ran: the import's
 *   `files` lists the hashed outputs embedded in the binary, read from there.
 * - From a checkout (`bun src/main.ts`), the import names the source page: it is bundled once,
 *   minified, on the first request for the console (so the tests and the CLI commands that never
 *   serve it pay nothing).
 *
 * Every file is compressed once (brotli and gzip) and served from memory: the whole console is
 * a few hundred kilobytes, and a 3 a.m. responder on a hotel connection gets it in one round.
 */
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib'
import page from './ui/index.html'

export interface ConsoleFile {
  /** The URL path it is served at: `/` for the page, `/<hashed name>` for the rest. */
  path: string
  type: string
  body: Uint8Array
  br: Uint8Array
  gzip: Uint8Array
  /** One per encoding: a cache must not answer a gzip request with the brotli bytes (RFC 9110 §8.8.3). */
  etag: { br: string; gzip: string; identity: string }
  /** Named by their content hash: cacheable for a year. The page itself is revalidated. */
  immutable: boolean
}

export type ConsoleFiles = ReadonlyMap<string, ConsoleFile>

interface Output {
  path: string
  type: string
  bytes: Uint8Array
}

/** The built files, compressed, by URL path. `transformPage` receives the page's HTML. */
export async function loadConsoleFiles(transformPage: (html: string) => string): Promise<ConsoleFiles> {
  const outputs = page.files ? await embedded(page.files) : await bundle(page.index)
  const files = new Map<string, ConsoleFile>()
  for (const o of outputs) {
    const isPage = o.type.startsWith('text/html')
    const bytes = isPage ? new TextEncoder().encode(transformPage(new TextDecoder().decode(o.bytes))) : o.bytes
    const path = isPage ? '/' : `/${basename(o.path)}`
    files.set(path, {
      path,
      type: o.type,
      body: bytes,
      br: brotliCompressSync(bytes, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11 } }),
      gzip: gzipSync(bytes, { level: 9 }),
      etag: etagsOf(bytes),
      immutable: !isPage,
    })
  }
  if (!files.has('/')) throw new Error('the console bundle has no HTML page')
  return files
}

const basename = (p: string) => p.slice(p.lastIndexOf('/') + 1)

function etagsOf(bytes: Uint8Array): ConsoleFile['etag'] {
  const tag = new Bun.CryptoHasher('sha256').update(bytes).digest('base64url').slice(0, 22)
  return { br: `"${tag}-br"`, gzip: `"${tag}-gz"`, identity: `"${tag}"` }
}

async function embedded(list: NonNullable<typeof page.files>): Promise<Output[]> {
  return Promise.all(
    list.map(async (f) => ({
      path: f.path,
      type: f.headers['content-type'],
      bytes: new Uint8Array(await Bun.file(f.path).arrayBuffer()),
    })),
  )
}

async function bundle(entry: string): Promise<Output[]> {
  // Preact's production JSX runtime and dead `NODE_ENV` branches dropped, as `bun run build` does.
  const result = await Bun.build({
    entrypoints: [entry],
    target: 'browser',
    minify: true,
    jsx: { development: false },
    define: { 'process.env.NODE_ENV': '"production"' },
  })
  if (!result.success) throw new AggregateError(result.logs, 'the console did not build')
  return Promise.all(
    result.outputs.map(async (o) => ({ path: o.path, type: o.type, bytes: new Uint8Array(await o.arrayBuffer()) })),
  )
}
