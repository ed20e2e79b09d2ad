/**
 * @module features/webhooks/url-guard
 * What a webhook URL may be, checked twice: when it is registered (syntax, scheme, literal
 * addresses) and before every delivery attempt (the host is resolved and EVERY address it resolves
 * to must be public), because a name that was public at registration can later point inside
 * (PITFALLS §2.6: SSRF). Redirects are never followed (the dispatcher uses `redirect: 'manual'`).
 *
 * Residual risk, documented in docs/webhooks.md: `fetch` resolves the name again when it
 * connects, so a name answering with a public address to our lookup and a private one to the
 * connection (DNS rebinding with a zero TTL) is not caught here; an egress proxy is the complete
 * guard in production.
 */
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import type { FieldError } from '../../errors.ts'

export interface TargetPolicy {
  /** Accept `http://` (tests and local development). */
  allowInsecure: boolean
  /** Accept loopback, private and link-local targets (tests and local development). */
  allowPrivate: boolean
}

/** Always refused: no endpoint of a customer lives there, whatever the configuration. */
const NEVER = new net.BlockList()
NEVER.addSubnet('0.0.0.0', 8, 'ipv4') // "this network"; 0.0.0.0 reaches the local host on Linux
NEVER.addSubnet('224.0.0.0', 4, 'ipv4') // multicast
NEVER.addSubnet('240.0.0.0', 4, 'ipv4') // reserved, broadcast
NEVER.addAddress('169.254.169.254', 'ipv4') // cloud instance metadata (AWS, GCP, Azure)
NEVER.addAddress('169.254.170.2', 'ipv4') // ECS task metadata and credentials
NEVER.addAddress('100.100.100.200', 'ipv4') // Alibaba metadata
NEVER.addAddress('::', 'ipv6')
NEVER.addSubnet('ff00::', 8, 'ipv6') // multicast
NEVER.addAddress('fd00:ec2::254', 'ipv6') // AWS metadata over IPv6

/** Internal ranges: refused unless the configuration allows private targets. */
const INTERNAL = new net.BlockList()
INTERNAL.addSubnet('10.0.0.0', 8, 'ipv4')
INTERNAL.addSubnet('100.64.0.0', 10, 'ipv4') // carrier-grade NAT (also some cloud internals)
INTERNAL.addSubnet('127.0.0.0', 8, 'ipv4')
INTERNAL.addSubnet('169.254.0.0', 16, 'ipv4') // link-local
INTERNAL.addSubnet('172.16.0.0', 12, 'ipv4')
INTERNAL.addSubnet('192.0.0.0', 24, 'ipv4') // IETF protocol assignments
INTERNAL.addSubnet('192.0.2.0', 24, 'ipv4') // documentation
INTERNAL.addSubnet('192.168.0.0', 16, 'ipv4')
INTERNAL.addSubnet('198.18.0.0', 15, 'ipv4') // benchmarking
INTERNAL.addSubnet('198.51.100.0', 24, 'ipv4') // documentation
INTERNAL.addSubnet('203.0.113.0', 24, 'ipv4') // documentation
INTERNAL.addAddress('::1', 'ipv6')
INTERNAL.addSubnet('fc00::', 7, 'ipv6') // unique local
INTERNAL.addSubnet('fe80::', 10, 'ipv6') // link-local
INTERNAL.addSubnet('fec0::', 10, 'ipv6') // deprecated site-local
INTERNAL.addSubnet('100::', 64, 'ipv6') // discard
INTERNAL.addSubnet('2001:db8::', 32, 'ipv6') // documentation
INTERNAL.addSubnet('64:ff9b:1::', 48, 'ipv6') // local-use NAT64: the IPv4 inside is unreadable (see embeddedIpv4)

/**
 * The IPv4 addresses carried inside an IPv6 one: the embedded address is what the packet
 * reaches, so it is judged instead. Mapped ::ffff:a.b.c.d, translated ::ffff:0:a.b.c.d,
 * compatible ::a.b.c.d (deprecated; :: and ::1 stay IPv6), NAT64 64:ff9b::/96, 6to4 2002::/16
 * (the address in bits 16–47), Teredo 2001::/32 (the server, and the client stored inverted).
 * The local-use NAT64 prefix 64:ff9b:1::/48 puts the address at a position set by each network,
 * so it cannot be read: it is in INTERNAL instead.
 */
function embeddedIpv4(v6: string): string[] {
  const words = expandIpv6(v6.toLowerCase())
  if (!words) return []
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  const zero = (from: number, to: number) => words.slice(from, to).every((w) => w === 0)
  if (zero(0, 5) && words[5] === 0xffff) return [v4(words[6]!, words[7]!)]
  if (zero(0, 4) && words[4] === 0xffff && words[5] === 0) return [v4(words[6]!, words[7]!)]
  if (zero(0, 6) && (words[6] !== 0 || words[7]! > 1)) return [v4(words[6]!, words[7]!)]
  if (words[0] === 0x64 && words[1] === 0xff9b && zero(2, 6)) return [v4(words[6]!, words[7]!)]
  if (words[0] === 0x2002) return [v4(words[1]!, words[2]!)]
  if (words[0] === 0x2001 && words[1] === 0) return [v4(words[2]!, words[3]!), v4(words[6]! ^ 0xffff, words[7]! ^ 0xffff)]
  return []
}

function expandIpv6(addr: string): number[] | null {
  if (addr.includes('.')) {
    const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr)
    if (!m) return null
    const [a, b, c, d] = m.slice(2).map(Number) as [number, number, number, number]
    addr = `${m[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = addr.split('::')
  if (halves.length > 2) return null
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)))
  const head = parse(halves[0]!)
  const tail = halves.length === 2 ? parse(halves[1]!) : []
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0
  const words = [...head, ...new Array<number>(Math.max(fill, 0)).fill(0), ...tail]
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : null
}

/** Why an address may not be a target, or null when it may. */
export function addressRefusal(address: string, allowPrivate: boolean): string | null {
  const family = net.isIP(address)
  if (family === 0) return `${address} is not an IP address`
  if (family === 6) {
    const carried = embeddedIpv4(address)
    for (const v4 of carried) {
      const refusal = addressRefusal(v4, allowPrivate)
      if (refusal) return `${address} carries ${refusal}`
    }
    if (carried.length > 0) return null
  }
  const type = family === 4 ? 'ipv4' : 'ipv6'
  if (NEVER.check(address, type)) return `${address} is a reserved or metadata address`
  if (!allowPrivate && INTERNAL.check(address, type)) return `${address} is a loopback, private or link-local address`
  return null
}

/** Host names that name this machine or an internal zone whatever DNS says. */
function internalName(host: string): boolean {
  const h = host.replace(/\.$/, '')
  return h === 'localhost' || h.endsWith('.localhost') || h.endsWith('.local') || h.endsWith('.internal') || !h.includes('.')
}

/** The bracket-free host of a parsed URL (IPv6 literals come bracketed). */
export function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
}

/**
 * Checks a URL at registration. Returns the normalized URL or the field errors (JSON Pointer
 * `pointer`); a registration-time pass does not make a URL safe to call (see `resolveTarget`).
 */
export function checkWebhookUrl(
  raw: string,
  policy: TargetPolicy,
  pointer: string,
): { ok: true; url: string } | { ok: false; errors: FieldError[] } {
  const fail = (message: string) => ({ ok: false as const, errors: [{ path: pointer, message }] })
  if (raw.length > 2048) return fail('must be at most 2048 characters')
  if (/[\s\u0000-\u001f\u007f]/.test(raw)) return fail('must not contain whitespace or control characters')
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return fail('must be an absolute URL')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return fail('the scheme must be https')
  if (url.protocol === 'http:' && !policy.allowInsecure) return fail('the scheme must be https (plain http is refused)')
  if (url.username !== '' || url.password !== '' || /^[a-z]+:\/\/[^/?#]*@/i.test(raw))
    return fail('must not carry credentials (user:password@)')
  if (raw.includes('#')) return fail('must not have a fragment')
  const host = hostOf(url)
  if (host === '') return fail('must name a host')
  if (net.isIP(host) !== 0) {
    const refusal = addressRefusal(host, policy.allowPrivate)
    if (refusal) return fail(`the target is not allowed: ${refusal}`)
  } else if (!policy.allowPrivate && internalName(host.toLowerCase())) {
    return fail('the target is not allowed: the host name is local or internal')
  }
  return { ok: true, url: url.href }
}

export class TargetRefusedError extends Error {
  override name = 'TargetRefusedError'
}

/** The host of a webhook URL did not resolve (an error, or no address). */
export class DnsLookupError extends Error {
  override name = 'DnsLookupError'
}

/**
 * Resolves the URL's host and checks every address it resolves to; throws TargetRefusedError
 * when the URL or any address is not allowed. Called before each delivery attempt, with the
 * attempt's signal (its timeout and the shutdown): a lookup cannot be cancelled, so it is raced
 * against the signal instead, and a hanging resolver ends the attempt like a hanging endpoint.
 */
export async function resolveTarget(rawUrl: string, policy: TargetPolicy, signal?: AbortSignal): Promise<void> {
  const checked = checkWebhookUrl(rawUrl, policy, '/url')
  if (!checked.ok) throw new TargetRefusedError(checked.errors[0]!.message)
  const host = hostOf(new URL(checked.url))
  if (net.isIP(host) !== 0) return
  let addresses: { address: string }[]
  try {
    addresses = await abortable(lookup(host, { all: true, verbatim: true }), signal)
  } catch (err) {
    if (signal?.aborted) throw signal.reason
    throw new DnsLookupError(`DNS lookup of ${host} failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (addresses.length === 0) throw new DnsLookupError(`DNS lookup of ${host} returned no address`)
  for (const { address } of addresses) {
    const refusal = addressRefusal(address, policy.allowPrivate)
    if (refusal) throw new TargetRefusedError(`${host} resolves to a refused address: ${refusal}`)
  }
}

/** `p`, or the signal's reason as soon as it aborts (the lookup itself runs on, unobserved). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p
  // Once abandoned, the lookup's own failure has nobody to report to.
  p.catch(() => {})
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
