/**
 * A small hand-written SVG bar chart, so benchmark results can be drawn next
 * to their Markdown tables without a plotting dependency.
 */
export interface Bar {
  readonly label: string
  readonly value: number
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function formatValue(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`
  return v.toFixed(v < 10 ? 2 : 0)
}

/** Horizontal bars, one per row, scaled to the largest value. */
export function barChartSvg(options: { title: string; unit: string; bars: readonly Bar[] }): string {
  const rowHeight = 28
  const left = 180
  const width = 760
  const plot = width - left - 90
  const top = 40
  const height = top + options.bars.length * rowHeight + 30
  const max = Math.max(1, ...options.bars.map((b) => b.value))
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(options.title)}</text>`,
  ]
  options.bars.forEach((b, i) => {
    const y = top + i * rowHeight
    const w = Math.max(1, (b.value / max) * plot)
    parts.push(`<text x="${left - 8}" y="${y + 17}" text-anchor="end">${escapeXml(b.label)}</text>`)
    parts.push(`<rect x="${left}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowHeight - 8}" fill="#3b82f6"/>`)
    parts.push(`<text x="${left + w + 6}" y="${y + 17}">${formatValue(b.value)}</text>`)
  })
  parts.push(`<text x="${left}" y="${height - 8}" fill="#555">${escapeXml(options.unit)}</text>`)
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}
