/** Waiting in tests for what the system must reach, failing loudly with what was last seen. */

/** Reads until `ok` holds; returns the value that satisfied it. */
export async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 20_000): Promise<T> {
  const until = Date.now() + ms
  let last = await read()
  while (!ok(last)) {
    if (Date.now() > until) throw new Error(`condition not reached in ${ms} ms; last value: ${JSON.stringify(last)}`)
    await Bun.sleep(25)
    last = await read()
  }
  return last
}

/** Polls `done` until it holds; the error names `what`. */
export async function waitFor(what: string, done: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(10)
  }
}
