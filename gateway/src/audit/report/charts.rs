//! Charts as inline SVG, drawn by plotters' SVG backend (no bitmap, font or image dependency:
//! text is SVG `<text>` in the browser's own sans-serif). plotters escapes the text and
//! attribute values it writes; labels are also cut to a length and stripped of control
//! characters here. Legends are left to the HTML around the chart.

use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Width of every chart, in pixels.
const WIDTH: u32 = 1100;
/// Label font.
const FONT: &str = "sans-serif";

/// One stacked series: a name and a value per bucket.
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) values: Vec<u64>,
}

/// A run on a timeline lane.
#[derive(Debug, Clone)]
pub(super) struct Span {
    pub(super) lane: usize,
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) color: RGBColor,
}

/// A marker on a timeline lane.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    pub(super) lane: usize,
    pub(super) at: i64,
    pub(super) color: RGBColor,
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of a series: fixed for the outcomes and guard modes moat writes, else by index.
pub(super) fn color(name: &str, index: usize) -> RGBColor {
    match name {
        "allow" | "enforce" => RGBColor(44, 160, 44),
        "refused" | "unattached" | "guard_unattached" => RGBColor(214, 39, 40),
        "client_aborted" | "off" => RGBColor(127, 127, 127),
        "monitor" => RGBColor(255, 127, 14),
        "guard_attached" => RGBColor(31, 119, 180),
        _ => PALETTE[index % PALETTE.len()],
    }
}

/// `#rrggbb`.
pub(super) fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// A label for a chart: control characters replaced, at most `max` characters.
pub(super) fn short(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The discrete range of a segmented axis for `n` items, and the slot of item 0: plotters'
/// `a..b` holds `b` too, so `0..n - 1`; a lone item is drawn in the middle of three slots (a
/// range of one value cannot be mapped, and a bar across half the chart reads badly).
fn slots(n: u32) -> (std::ops::Range<u32>, u32) {
    if n <= 1 {
        (0..2, 1)
    } else {
        (0..n - 1, 0)
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A chart `height` pixels high (and [`WIDTH`] wide) as SVG: `draw` draws on the white area.
fn svg(
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The chart builder every chart starts from: its margin, the x axis' label area and a y label
/// area `y_label_area` pixels wide.
fn builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    y_label_area: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.margin(12)
        .x_label_area_size(36)
        .y_label_area_size(y_label_area);
    b
}

/// Stacked vertical bars: one bar per x label, one segment per series.
pub(super) fn stacked(
    y_desc: &str,
    x_labels: &[String],
    series: &[Series],
) -> Result<String, String> {
    let n = u32::try_from(x_labels.len().max(1)).map_err(err)?;
    let totals: Vec<u64> = (0..x_labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let ymax = totals.iter().copied().max().unwrap_or(0).max(1);
    let ymax = ymax + ymax / 10 + 1;
    let (range, lead) = slots(n);
    svg(340, |root| {
        let mut chart = builder(root, 64)
            .build_cartesian_2d(range.into_segmented(), 0u64..ymax)
            .map_err(err)?;
        let format_x = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) if *i >= lead => x_labels
                .get((*i - lead) as usize)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(((n + 2 * lead) as usize).min(10))
            .x_label_formatter(&format_x)
            .y_desc(y_desc)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let mut base = vec![0u64; x_labels.len()];
        for (si, s) in series.iter().enumerate() {
            let c = color(&s.name, si);
            let mut bars = Vec::new();
            for (i, &v) in s.values.iter().enumerate().take(x_labels.len()) {
                if v == 0 {
                    continue;
                }
                let x = u32::try_from(i).map_err(err)? + lead;
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(x), base[i]),
                        (SegmentValue::Exact(x + 1), base[i] + v),
                    ],
                    c.filled(),
                );
                r.set_margin(0, 0, 2, 2);
                bars.push(r);
                base[i] += v;
            }
            chart.draw_series(bars).map_err(err)?;
        }
        Ok(())
    })
}

/// Horizontal bars, largest first: `(label, value)`.
pub(super) fn bars(x_desc: &str, items: &[(String, u64)]) -> Result<String, String> {
    let n = u32::try_from(items.len().max(1)).map_err(err)?;
    let xmax = items.iter().map(|i| i.1).max().unwrap_or(0).max(1);
    let xmax = xmax + xmax / 6 + 1;
    let labels: Vec<String> = items.iter().map(|(l, _)| short(l, 48)).collect();
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1);
    let label_area = u32::try_from(widest * 7 + 16).unwrap_or(360).clamp(60, 360);
    let (range, lead) = slots(n);
    let height = 70 + 26 * (n + 2 * lead);
    svg(height, |root| {
        let mut chart = builder(root, label_area)
            .build_cartesian_2d(0u64..xmax, range.into_segmented())
            .map_err(err)?;
        // Row 0 is drawn at the top: y = lead + n - 1 - row.
        let format_y = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(y) if *y >= lead && *y - lead < n => labels
                .get((n - 1 - (*y - lead)) as usize)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels((n + 2 * lead) as usize)
            .y_label_formatter(&format_y)
            .x_desc(x_desc)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let mut shapes = Vec::new();
        let mut texts = Vec::new();
        for (row, (name, v)) in items.iter().enumerate() {
            let y = lead + n - 1 - u32::try_from(row).map_err(err)?;
            let mut r = Rectangle::new(
                [
                    (0, SegmentValue::Exact(y)),
                    (*v, SegmentValue::Exact(y + 1)),
                ],
                color(name, row).filled(),
            );
            r.set_margin(4, 4, 0, 0);
            shapes.push(r);
            texts.push(Text::new(
                format!(" {v}"),
                (*v, SegmentValue::CenterOf(y)),
                (FONT, 12).into_font(),
            ));
        }
        chart.draw_series(shapes).map_err(err)?;
        chart.draw_series(texts).map_err(err)?;
        Ok(())
    })
}

/// Lanes over time (Unix seconds `t0..t1`): spans as bars, marks as vertical strokes.
pub(super) fn timeline(
    lanes: &[String],
    spans: &[Span],
    marks: &[Mark],
    (t0, t1): (i64, i64),
    format_t: &dyn Fn(i64) -> String,
) -> Result<String, String> {
    let n = u32::try_from(lanes.len().max(1)).map_err(err)?;
    let t1 = t1.max(t0 + 60);
    let pad = (t1 - t0) / 50 + 1;
    let (t0, t1) = (t0 - pad, t1 + pad);
    // A run of one request still shows: at least 1/300 of the axis wide.
    let min_width = ((t1 - t0) / 300).max(1);
    let labels: Vec<String> = lanes.iter().map(|l| short(l, 40)).collect();
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1);
    let label_area = u32::try_from(widest * 7 + 16).unwrap_or(300).clamp(60, 300);
    let (range, lead) = slots(n);
    let height = 80 + 46 * (n + 2 * lead);
    svg(height, |root| {
        let mut chart = builder(root, label_area)
            .build_cartesian_2d(t0..t1, range.into_segmented())
            .map_err(err)?;
        let format_y = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(y) if *y >= lead => labels
                .get((*y - lead) as usize)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        let format_x = |t: &i64| format_t(*t);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(8)
            .x_label_formatter(&format_x)
            .y_labels((n + 2 * lead) as usize)
            .y_label_formatter(&format_y)
            .x_desc("time (UTC)")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let mut shapes = Vec::new();
        for s in spans {
            let y = u32::try_from(s.lane).map_err(err)? + lead;
            let mut r = Rectangle::new(
                [
                    (s.from, SegmentValue::Exact(y)),
                    (s.to.max(s.from + min_width), SegmentValue::Exact(y + 1)),
                ],
                s.color.filled(),
            );
            r.set_margin(8, 8, 0, 0);
            shapes.push(r);
        }
        chart.draw_series(shapes).map_err(err)?;
        let mut strokes = Vec::new();
        for m in marks {
            let y = u32::try_from(m.lane).map_err(err)? + lead;
            strokes.push(PathElement::new(
                vec![
                    (m.at, SegmentValue::Exact(y)),
                    (m.at, SegmentValue::Exact(y + 1)),
                ],
                m.color.stroke_width(3),
            ));
        }
        chart.draw_series(strokes).map_err(err)?;
        Ok(())
    })
}
