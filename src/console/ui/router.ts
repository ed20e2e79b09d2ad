/**
 * @module console/ui/router
 * Hash routes (`/#/sessions/<id>?at=<event>`): a link a responder pastes into the incident
 * channel opens the same view, and the server needs no route per page.
 */
import { useEffect, useState } from 'preact/hooks'

export interface Route {
  /** Path segments: `#/sessions/abc` → `['sessions', 'abc']`. */
  parts: string[]
  query: URLSearchParams
}

export function parse(hash: string): Route {
  const raw = hash.replace(/^#\/?/, '')
  const q = raw.indexOf('?')
  const path = q < 0 ? raw : raw.slice(0, q)
  return {
    parts: path.split('/').filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)),
  }
}

export function href(parts: readonly string[], query?: Record<string, string | undefined>): string {
  const qs = new URLSearchParams()
  for (const [k, v] of Object.entries(query ?? {})) if (v) qs.set(k, v)
  const s = qs.toString()
  return `#/${parts.map(encodeURIComponent).join('/')}${s ? `?${s}` : ''}`
}

export const navigate = (to: string): void => {
  location.hash = to
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash))
  useEffect(() => {
    const on = () => setRoute(parse(location.hash))
    addEventListener('hashchange', on)
    return () => removeEventListener('hashchange', on)
  }, [])
  return route
}
