/**
 * @module console/ui/components/virtual-table
 * A table that stays smooth with tens of thousands of rows (issue 12: 10,000 live events): only
 * the rows in view, plus a few either side, are in the DOM; the rest is an empty spacer of their
 * height. Rows have one fixed height, so no measuring is needed. Screen readers get the full
 * count (`aria-rowcount`) and each rendered row's index.
 */
import type { ComponentChildren } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'

export interface Column<T> {
  key: string
  label: string
  /** A CSS grid track: `8rem`, `1fr`, `minmax(10rem, 2fr)`. */
  width: string
  cell(row: T): ComponentChildren
}

export interface VirtualTableProps<T> {
  label: string
  rows: readonly T[]
  columns: readonly Column<T>[]
  rowKey(row: T): string
  onRowClick?(row: T): void
  rowClass?(row: T): string
  /** Pixels per row (keep it in step with the CSS). */
  rowHeight?: number
  height?: string
}

const OVERSCAN = 8

export function VirtualTable<T>(p: VirtualTableProps<T>) {
  const rowHeight = p.rowHeight ?? 32
  const box = useRef<HTMLDivElement>(null)
  const [view, setView] = useState({ top: 0, height: 600 })
  useEffect(() => {
    const el = box.current!
    const update = () => setView({ top: el.scrollTop, height: el.clientHeight })
    update()
    el.addEventListener('scroll', update, { passive: true })
    const resize = new ResizeObserver(update)
    resize.observe(el)
    return () => {
      el.removeEventListener('scroll', update)
      resize.disconnect()
    }
  }, [])
  const first = Math.max(0, Math.floor(view.top / rowHeight) - OVERSCAN)
  const last = Math.min(p.rows.length, Math.ceil((view.top + view.height) / rowHeight) + OVERSCAN)
  const template = p.columns.map((c) => c.width).join(' ')
  return (
    <div class="vtable" role="table" aria-label={p.label} aria-rowcount={p.rows.length + 1}>
      <div class="vrow vhead" role="row" aria-rowindex={1} style={{ gridTemplateColumns: template }}>
        {p.columns.map((c) => (
          <div role="columnheader" key={c.key}>
            {c.label}
          </div>
        ))}
      </div>
      <div class="vbody" ref={box} style={{ height: p.height ?? '70vh' }} tabIndex={0} role="rowgroup">
        <div style={{ height: `${p.rows.length * rowHeight}px`, position: 'relative' }}>
          {p.rows.slice(first, last).map((row, i) => (
            <div
              key={p.rowKey(row)}
              role="row"
              aria-rowindex={first + i + 2}
              class={`vrow${p.onRowClick ? ' clickable' : ''} ${p.rowClass?.(row) ?? ''}`}
              style={{ gridTemplateColumns: template, top: `${(first + i) * rowHeight}px`, height: `${rowHeight}px` }}
              onClick={p.onRowClick ? () => p.onRowClick!(row) : undefined}
            >
              {p.columns.map((c) => (
                <div role="cell" key={c.key}>
                  {c.cell(row)}
                </div>
              ))}
            </div>
          ))}
        </div>
      </div>
    </div>
  )
}
