//! Node sizes, port positions, the viewport (pan and zoom), fit-to-view and tidy-up.
//! Sizes are computed, not measured from the DOM, so wires, hit tests and culling need no
//! layout pass and work the same without a browser.

use crate::history::Command;
use crate::model::{Graph, Node, Pos};
use std::collections::HashMap;

pub const NODE_WIDTH: f64 = 200.0;
pub const HEADER_HEIGHT: f64 = 30.0;
pub const ROW_HEIGHT: f64 = 22.0;
pub const PADDING: f64 = 8.0;

/// Height of a node from its port rows.
pub fn node_height(n: &Node) -> f64 {
    let rows = n.inputs.len().max(n.outputs.len()) as f64;
    HEADER_HEIGHT + rows * ROW_HEIGHT + PADDING
}

/// World position of an input (`output == false`) or output port's centre.
pub fn port_pos(n: &Node, output: bool, index: usize) -> Pos {
    port_at(n.pos, output, index)
}

/// World position of a port's centre for a node whose top-left corner is at `corner`.
pub fn port_at(corner: Pos, output: bool, index: usize) -> Pos {
    let y = corner.y + HEADER_HEIGHT + ROW_HEIGHT * (index as f64 + 0.5);
    let x = if output { corner.x + NODE_WIDTH } else { corner.x };
    Pos::new(x, y)
}

pub fn port_pos_by_name(n: &Node, output: bool, name: &str) -> Option<Pos> {
    let ports = if output { &n.outputs } else { &n.inputs };
    ports.iter().position(|p| p.name == name).map(|i| port_pos(n, output, i))
}

/// An axis-aligned rectangle in world coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn from_corners(a: Pos, b: Pos) -> Rect {
        Rect { x: a.x.min(b.x), y: a.y.min(b.y), w: (a.x - b.x).abs(), h: (a.y - b.y).abs() }
    }

    pub fn intersects(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    pub fn contains(&self, p: Pos) -> bool {
        p.x >= self.x && p.x <= self.x + self.w && p.y >= self.y && p.y <= self.y + self.h
    }

    /// Whether `o` lies wholly inside.
    pub fn contains_rect(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.x + o.w <= self.x + self.w && o.y + o.h <= self.y + self.h
    }

    pub fn union(&self, o: &Rect) -> Rect {
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        Rect { x, y, w: (self.x + self.w).max(o.x + o.w) - x, h: (self.y + self.h).max(o.y + o.h) - y }
    }
}

pub fn node_rect(n: &Node) -> Rect {
    Rect { x: n.pos.x, y: n.pos.y, w: NODE_WIDTH, h: node_height(n) }
}

/// Bounding box of some nodes (all, annotations included, when `ids` is `None`); `None`
/// when there are none.
pub fn bounds(g: &Graph, ids: Option<&[String]>) -> Option<Rect> {
    let nodes = g.nodes.values().filter(|n| ids.is_none_or(|ids| ids.contains(&n.id))).map(node_rect);
    let notes = g.annotations.values().filter(|_| ids.is_none()).map(|a| a.rect());
    nodes.chain(notes).reduce(|a, b| a.union(&b))
}

/// Annotations wholly inside `r`.
pub fn annotations_in(g: &Graph, r: &Rect) -> Vec<String> {
    g.annotations.values().filter(|a| r.contains_rect(&a.rect())).map(|a| a.id.clone()).collect()
}

/// The place nearest `at` for the top-left corner of a `w` × `h` box that overlaps no node
/// and no note (groups may hold it), searched on square rings 40 units apart out to 25
/// rings; `at` itself when all of those are taken. A new note goes there, not under a node.
pub fn free_spot(g: &Graph, at: Pos, w: f64, h: f64) -> Pos {
    const STEP: f64 = 40.0;
    const GAP: f64 = 10.0;
    let blocked = |p: Pos| {
        let r = Rect { x: p.x - GAP, y: p.y - GAP, w: w + 2.0 * GAP, h: h + 2.0 * GAP };
        g.nodes.values().any(|n| node_rect(n).intersects(&r))
            || g.annotations.values().any(|a| a.kind == crate::model::AnnotationKind::Note && a.rect().intersects(&r))
    };
    for ring in 0..=25i32 {
        let mut best: Option<(i32, Pos)> = None;
        for i in -ring..=ring {
            for j in -ring..=ring {
                if i.abs().max(j.abs()) != ring {
                    continue;
                }
                let p = Pos::new(at.x + f64::from(i) * STEP, at.y + f64::from(j) * STEP);
                let d = i * i + j * j;
                if best.is_none_or(|(bd, _)| d < bd) && !blocked(p) {
                    best = Some((d, p));
                }
            }
        }
        if let Some((_, p)) = best {
            return p;
        }
    }
    at
}

/// Room a group leaves around the nodes it is made for (its title sits in the top margin).
pub const GROUP_MARGIN: f64 = 30.0;
pub const GROUP_TITLE: f64 = 30.0;

/// The rectangle of a group around `r`.
pub fn group_rect(r: &Rect) -> Rect {
    Rect {
        x: r.x - GROUP_MARGIN,
        y: r.y - GROUP_MARGIN - GROUP_TITLE,
        w: r.w + 2.0 * GROUP_MARGIN,
        h: r.h + 2.0 * GROUP_MARGIN + GROUP_TITLE,
    }
}

/// Nodes whose rectangle meets `r`.
pub fn nodes_in(g: &Graph, r: &Rect) -> Vec<String> {
    g.nodes.values().filter(|n| node_rect(n).intersects(r)).map(|n| n.id.clone()).collect()
}

/// The cubic Bézier a wire is drawn as: out of the output port to the right, into the input
/// port from the left. Returns the four control points.
pub fn wire_curve(a: Pos, b: Pos) -> [Pos; 4] {
    let dx = ((b.x - a.x).abs() / 2.0).max(40.0);
    [a, Pos::new(a.x + dx, a.y), Pos::new(b.x - dx, b.y), b]
}

/// A box that holds the whole wire from `a` to `b` (its control polygon's box: a Bézier
/// lies inside the hull of its control points).
pub fn wire_bounds(a: Pos, b: Pos) -> Rect {
    let c = wire_curve(a, b);
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in c {
        x0 = x0.min(p.x);
        y0 = y0.min(p.y);
        x1 = x1.max(p.x);
        y1 = y1.max(p.y);
    }
    Rect { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }
}

/// Segments a wire is flattened into for hit tests.
const WIRE_SEGMENTS: usize = 32;

/// Distance (world units) from `p` to the wire from `a` to `b`, on the curve flattened into
/// short segments (well under a pixel off at any zoom the editor allows).
pub fn wire_distance(a: Pos, b: Pos, p: Pos) -> f64 {
    let [p0, p1, p2, p3] = wire_curve(a, b);
    let at = |t: f64| {
        let u = 1.0 - t;
        let (k0, k1, k2, k3) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
        Pos::new(k0 * p0.x + k1 * p1.x + k2 * p2.x + k3 * p3.x, k0 * p0.y + k1 * p1.y + k2 * p2.y + k3 * p3.y)
    };
    let mut best = f64::MAX;
    let mut prev = p0;
    for i in 1..=WIRE_SEGMENTS {
        let next = at(i as f64 / WIRE_SEGMENTS as f64);
        best = best.min(segment_distance(prev, next, p));
        prev = next;
    }
    best
}

fn segment_distance(a: Pos, b: Pos, p: Pos) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 { 0.0 } else { (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0) };
    let (cx, cy) = (a.x + t * dx, a.y + t * dy);
    ((p.x - cx).powi(2) + (p.y - cy).powi(2)).sqrt()
}

pub const MIN_ZOOM: f64 = 0.1;
pub const MAX_ZOOM: f64 = 2.5;

/// Maps world to screen: `screen = world * zoom + (x, y)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    pub x: f64,
    pub y: f64,
    pub zoom: f64,
}

impl Default for Viewport {
    fn default() -> Self {
        Viewport { x: 0.0, y: 0.0, zoom: 1.0 }
    }
}

impl Viewport {
    pub fn to_world(&self, screen: Pos) -> Pos {
        Pos::new((screen.x - self.x) / self.zoom, (screen.y - self.y) / self.zoom)
    }

    pub fn to_screen(&self, world: Pos) -> Pos {
        Pos::new(world.x * self.zoom + self.x, world.y * self.zoom + self.y)
    }

    /// Zoom by `factor` keeping the world point under `screen` fixed.
    pub fn zoom_at(&self, screen: Pos, factor: f64) -> Viewport {
        let zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        let w = self.to_world(screen);
        Viewport { x: screen.x - w.x * zoom, y: screen.y - w.y * zoom, zoom }
    }

    /// The world rectangle visible in a `width` × `height` screen.
    pub fn visible(&self, width: f64, height: f64) -> Rect {
        let a = self.to_world(Pos::new(0.0, 0.0));
        Rect { x: a.x, y: a.y, w: width / self.zoom, h: height / self.zoom }
    }

    /// A viewport showing `r` whole and centred, with `margin` screen pixels around it;
    /// never zooms in past 1.
    pub fn fit(r: Rect, width: f64, height: f64, margin: f64) -> Viewport {
        let aw = (width - 2.0 * margin).max(1.0);
        let ah = (height - 2.0 * margin).max(1.0);
        let zoom = (aw / r.w.max(1.0)).min(ah / r.h.max(1.0)).clamp(MIN_ZOOM, 1.0);
        let x = width / 2.0 - (r.x + r.w / 2.0) * zoom;
        let y = height / 2.0 - (r.y + r.h / 2.0) * zoom;
        Viewport { x, y, zoom }
    }
}

/// Snap a coordinate to the grid.
pub fn snap(v: f64, grid: f64) -> f64 {
    if grid <= 0.0 {
        v
    } else {
        (v / grid).round() * grid
    }
}

/// One-click tidy-up: columns by longest path from the sources, rows in current vertical
/// order within a column. One command, so one undo.
pub fn tidy(g: &Graph) -> Command {
    let mut depth: HashMap<&str, usize> = g.nodes.keys().map(|k| (k.as_str(), 0)).collect();
    // Longest-path layering; bounded by the node count so a cycle cannot loop forever.
    for _ in 0..g.nodes.len() {
        let mut changed = false;
        for e in &g.edges {
            let (Some(&a), Some(&b)) = (depth.get(e.from.node.as_str()), depth.get(e.to.node.as_str())) else {
                continue;
            };
            if b < a + 1 && a + 1 < g.nodes.len().max(1) {
                depth.insert(e.to.node.as_str(), a + 1);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut columns: Vec<Vec<&Node>> = Vec::new();
    for n in g.nodes.values() {
        let d = depth.get(n.id.as_str()).copied().unwrap_or(0);
        if columns.len() <= d {
            columns.resize_with(d + 1, Vec::new);
        }
        columns[d].push(n);
    }
    // The nodes' corner, not the annotations' (a refitted group would shift it every time).
    let origin = g.nodes.values().map(node_rect).reduce(|a, b| a.union(&b));
    let origin = origin.map(|r| Pos::new(r.x, r.y)).unwrap_or_default();
    let mut moves = Vec::new();
    for (c, col) in columns.iter_mut().enumerate() {
        col.sort_by(|a, b| a.pos.y.total_cmp(&b.pos.y).then(a.id.cmp(&b.id)));
        let mut y = origin.y;
        for n in col.iter() {
            let to = Pos::new(origin.x + c as f64 * (NODE_WIDTH + 80.0), y);
            if to != n.pos {
                moves.push((n.id.clone(), to));
            }
            y += node_height(n) + 40.0;
        }
    }
    // Groups keep wrapping the nodes they held: each is refitted around their new places.
    let mut refits = Vec::new();
    for a in g.annotations.values().filter(|a| a.kind == crate::model::AnnotationKind::Group) {
        let (members, _) = g.group_contents(&a.id);
        let placed = members.iter().filter_map(|id| {
            let n = g.nodes.get(id)?;
            let at = moves.iter().find(|(m, _)| m == id).map(|(_, p)| *p).unwrap_or(n.pos);
            Some(Rect { x: at.x, y: at.y, ..node_rect(n) })
        });
        if let Some(r) = placed.reduce(|a, b| a.union(&b)) {
            let r = group_rect(&r);
            let mut refit = a.clone();
            refit.pos = Pos::new(r.x, r.y);
            (refit.width, refit.height) = (r.w, r.h);
            if refit != *a {
                refits.push(refit);
            }
        }
    }
    let mut cmd = Command::moves(moves);
    cmd.ops.extend(refits.into_iter().map(|annotation| crate::history::Op::SetAnnotation { annotation }));
    cmd.label = "Tidy up".to_string();
    cmd
}
