/** @module console/ui/format — how times, numbers and risk read on screen. */

const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' })
const STEPS: [number, Intl.RelativeTimeFormatUnit][] = [
  [60, 'second'],
  [60, 'minute'],
  [24, 'hour'],
  [30, 'day'],
  [12, 'month'],
  [Infinity, 'year'],
]

/** "3 minutes ago"; null: "never". */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never'
  let v = (new Date(iso).getTime() - now) / 1000
  for (const [size, unit] of STEPS) {
    if (Math.abs(v) < size) return rtf.format(Math.round(v), unit)
    v /= size
  }
  return iso
}

const dtf = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
})
export const when = (iso: string | null | undefined): string => (iso ? dtf.format(new Date(iso)) : '—')

const nf = new Intl.NumberFormat()
export const count = (n: number | null | undefined): string => (n === null || n === undefined ? '—' : nf.format(n))

export type Severity = 'low' | 'medium' | 'high' | 'critical'
export const SEVERITIES: readonly Severity[] = ['critical', 'high', 'medium', 'low']

/** SPEC §16.1's bands, as the API's `risk_band`. */
export function riskBand(score: number | null | undefined): string {
  if (score === null || score === undefined) return 'unscored'
  if (score <= 10) return 'none'
  if (score <= 30) return 'low'
  if (score <= 60) return 'medium'
  if (score <= 80) return 'high'
  return 'critical'
}

export const short = (id: string | null | undefined, n = 8): string => (id ? (id.length > n ? `${id.slice(0, n)}…` : id) : '—')
