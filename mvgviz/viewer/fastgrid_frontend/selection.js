// The Components grammar of mvgviz/selection.py (parse_components), for the fastgrid component.
// Same inputs give the same indices, or an error (tests/test_browser.py checks a table of inputs).
// Differences: Python's \d and int() also read non-ASCII digits (e.g. Arabic-Indic); this reads
// ASCII digits only and calls such text an error.
(function (root) {
  "use strict";
  const RANGE = /^(\d+)\s*-\s*(\d+)$/;
  function pyInt(s) {            // int(s) of Python for ASCII text: whitespace, sign, digits, single underscores
    const t = s.trim();
    if (!/^[+-]?\d+(?:_\d+)*$/.test(t)) return null;
    return parseInt(t.replace(/_/g, ""), 10);
  }
  function err(msg) { const e = new Error(msg); e.param = "components"; throw e; }
  function parseList(text, hi, what) {
    const out = [];
    for (let part of text.split(",")) {
      part = part.trim();
      if (!part) continue;
      let vals;
      const r = RANGE.exec(part);
      if (r) {
        const a = parseInt(r[1], 10), b = parseInt(r[2], 10);
        if (a > b) err(`range '${part}' is empty (start > end)`);
        vals = [];
        // stops just past hi: the first bad index is reported, like Python
        for (let v = a; v <= b && vals.length <= hi; v++) vals.push(v);
      } else if (/^[+-]?\d+$/.test(part)) {
        vals = [parseInt(part, 10)];
      } else {
        err(`cannot read '${part}' in '${text}'; expected integers or ranges like 3-7, separated by commas`);
      }
      for (const v of vals) if (!(v >= 0 && v < hi)) err(`index ${v} is out of range${what}; valid: 0..${hi - 1}`);
      out.push(...vals);
    }
    if (!out.length) err(`no index in '${text}'`);
    return [...new Set(out)];
  }
  // text: the Components box; layer: {name, channels, ranking (best first, or null), metrics_note}
  function parseComponents(text, layer) {
    const c = layer.channels;
    const t = String(text).trim().toLowerCase();
    const where = `layer ${layer.name} has ${c} components, 0..${c - 1}`;
    for (const kind of ["best", "worst"]) {
      if (t.startsWith(kind + ":")) {
        const n = pyInt(t.slice(kind.length + 1));
        if (n === null) err(`'${text}' must be ${kind}:N with an integer N in 1..${c}`);
        if (!(n >= 1 && n <= c)) err(`${kind}:N needs N in 1..${c} (${where}), got ${n}`);
        if (!layer.ranking) err(`${kind}:N needs the single-component AUROCs, which need ground-truth masks (${layer.metrics_note || "none here"}); use indices such as 0-3`);
        const order = kind === "best" ? layer.ranking : layer.ranking.slice().reverse();
        return order.slice(0, n);
      }
    }
    if (!/^[+-]?\d/.test(t)) err(`must be best:N, worst:N or indices like 12,40 or 3-7 (${where}), got '${text}'`);
    return parseList(t, c, ` of layer ${layer.name} (${c} components)`);
  }
  root.mvgvizParseComponents = parseComponents;
})(typeof window !== "undefined" ? window : globalThis);
