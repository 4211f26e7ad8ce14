// An accessibility audit of the current page, run in the browser by `Session::accessibility_problems`.
// It checks what a machine can check reliably (WCAG 2.1 A/AA): names of controls, document
// structure, keyboard reachability and text contrast. It returns one sentence per problem.
"use strict";
const problems = [];
const describe = (el) => {
  const id = el.id ? "#" + el.id : "";
  const name = el.getAttribute("name") ? "[name=" + el.getAttribute("name") + "]" : "";
  const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 40);
  return "<" + el.tagName.toLowerCase() + id + name + ">" + (text ? " \"" + text + "\"" : "");
};
const visible = (el) => {
  const style = getComputedStyle(el);
  if (style.display === "none" || style.visibility === "hidden") return false;
  const rect = el.getBoundingClientRect();
  return rect.width > 0 && rect.height > 0 && !el.closest("[hidden], details:not([open]) > :not(summary)");
};
const accessibleName = (el) => {
  const labelledby = el.getAttribute("aria-labelledby");
  if (labelledby) {
    const text = labelledby.split(/\s+/).map((id) => document.getElementById(id)).filter(Boolean)
      .map((ref) => ref.textContent.trim()).join(" ");
    if (text) return text;
  }
  const aria = (el.getAttribute("aria-label") || "").trim();
  if (aria) return aria;
  if (el.labels && el.labels.length) return Array.from(el.labels).map((l) => l.textContent.trim()).join(" ");
  if (el.tagName === "INPUT" && ["submit", "button", "reset"].includes(el.type)) return el.value;
  if (el.tagName === "BUTTON" || el.tagName === "A" || el.tagName === "SUMMARY") return el.textContent.trim();
  return (el.getAttribute("title") || "").trim();
};

// The document: language, title, one h1, no skipped heading level, landmarks, unique ids.
if (!document.documentElement.lang) problems.push("the <html> element has no lang attribute");
if (!document.title.trim()) problems.push("the page has no <title>");
const h1s = document.querySelectorAll("h1");
if (h1s.length !== 1) problems.push("the page has " + h1s.length + " <h1> elements (expected 1)");
let level = 0;
for (const heading of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
  const next = Number(heading.tagName[1]);
  if (level && next > level + 1) problems.push(describe(heading) + " skips from h" + level + " to h" + next);
  level = next;
}
if (!document.querySelector("main")) problems.push("the page has no <main> landmark");
const ids = new Map();
for (const el of document.querySelectorAll("[id]")) ids.set(el.id, (ids.get(el.id) || 0) + 1);
for (const [id, count] of ids) if (count > 1) problems.push("the id \"" + id + "\" is used " + count + " times");
for (const el of document.querySelectorAll("[aria-describedby], [aria-labelledby]")) {
  for (const attr of ["aria-describedby", "aria-labelledby"]) {
    for (const ref of (el.getAttribute(attr) || "").split(/\s+/).filter(Boolean)) {
      if (!document.getElementById(ref)) problems.push(describe(el) + " has " + attr + " \"" + ref + "\" but no element has that id");
    }
  }
}

// Controls: every field, button and link has a name; images have alternative text.
for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button, a[href], summary")) {
  if (!accessibleName(el)) problems.push(describe(el) + " has no accessible name (label, text or aria-label)");
}
for (const img of document.querySelectorAll("img:not([alt])")) problems.push(describe(img) + " has no alt text");
for (const svg of document.querySelectorAll("svg[role=img]")) {
  if (!accessibleName(svg) && !svg.querySelector("title")) problems.push(describe(svg) + " (an image) has no title");
}

// Keyboard: nothing visible and interactive is taken out of the tab order; no positive tabindex.
for (const el of document.querySelectorAll("[tabindex]")) {
  const index = Number(el.getAttribute("tabindex"));
  if (index > 0) problems.push(describe(el) + " has tabindex " + index + " (breaks the natural order)");
  if (index < 0 && el.matches("a[href], button, input, select, textarea") && visible(el)) {
    problems.push(describe(el) + " is interactive but removed from the tab order");
  }
}

// Contrast of visible text against its (opaque) background: 4.5:1, or 3:1 for large text.
const parse = (color) => {
  const m = color.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const parts = m[1].split(/[,\s/]+/).filter(Boolean).map(Number);
  return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
};
const luminance = ({ r, g, b }) => {
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
};
const background = (el) => {
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const color = parse(getComputedStyle(node).backgroundColor);
    if (color && color.a >= 0.99) return color;
    if (getComputedStyle(node).backgroundImage !== "none") return null; // cannot tell
  }
  return { r: 255, g: 255, b: 255, a: 1 };
};
const checked = new Set();
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const el = node.parentElement;
  if (!node.textContent.trim() || !el || checked.has(el) || !visible(el)) continue;
  if (el.closest("svg, [aria-hidden=true]")) continue;
  checked.add(el);
  const style = getComputedStyle(el);
  const fg = parse(style.color);
  const bg = background(el);
  if (!fg || !bg) continue;
  const opacity = Number(style.opacity) * fg.a;
  // Disabled controls are exempt (WCAG 1.4.3), as is text made translucent on purpose with them.
  if (el.closest("button[disabled], input[disabled], [aria-disabled=true]")) continue;
  const blended = { r: fg.r * opacity + bg.r * (1 - opacity), g: fg.g * opacity + bg.g * (1 - opacity), b: fg.b * opacity + bg.b * (1 - opacity) };
  const [light, dark] = [luminance(blended), luminance(bg)].sort((x, y) => y - x);
  const ratio = (light + 0.05) / (dark + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
  const needed = large ? 3 : 4.5;
  if (ratio < needed) problems.push(describe(el) + " has contrast " + ratio.toFixed(2) + ":1 (needs " + needed + ":1)");
}
return problems;
