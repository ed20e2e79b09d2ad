/**
 * @module console/ui/components/plot
 * A uPlot chart (uPlot: ~50 KB, canvas, draws 100k points in milliseconds) sized to its box and
 * redrawn when the data change.
 */
import { useEffect, useRef } from 'preact/hooks'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

export interface PlotProps {
  /** What the chart shows, for screen readers (the figures are also given as text nearby). */
  label: string
  options: Omit<uPlot.Options, 'width' | 'height'>
  data: uPlot.AlignedData
  height?: number
}

export function Plot({ label, options, data, height = 180 }: PlotProps) {
  const box = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)
  useEffect(() => {
    const el = box.current!
    plot.current = new uPlot({ ...options, width: el.clientWidth || 400, height }, data, el)
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: el.clientWidth, height }))
    resize.observe(el)
    return () => {
      resize.disconnect()
      plot.current?.destroy()
      plot.current = null
    }
    // Options are fixed per chart; data changes go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [])
  useEffect(() => plot.current?.setData(data), [data])
  return <div class="plot" role="img" aria-label={label} ref={box} />
}

/** A bar series path (uPlot's own helper). */
export const bars = uPlot.paths.bars!({ size: [0.8, 60] })
