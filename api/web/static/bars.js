// Results as bars: one row per candidate, kept across updates so that the bars glide to their new
// length (the page's main view and the projector view share it).

import { formatNumber, formatShare, t, votes } from "./i18n.js";

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function row(candidate) {
  const li = element("li", "bar-row");
  li.dataset.candidate = String(candidate.id);
  const label = element("div", "bar-label");
  label.append(element("span", "bar-name"), element("span", "bar-meta"),
    element("span", "pill pill-leading"), element("span", "pill pill-mine"));
  const value = element("div", "bar-value");
  value.append(element("strong", "bar-votes"), element("span", "bar-share"));
  const track = element("div", "bar-track");
  track.setAttribute("aria-hidden", "true");
  track.append(element("div", "bar-fill"));
  li.append(label, value, track);
  return li;
}

/**
 * Show ``results`` (the API's shape) in the list ``list``. ``details`` maps candidate ids to the
 * poll's candidates (for their part and team); ``mine`` is the id the reader voted for, if any.
 */
export function renderBars(list, results, { details = new Map(), mine = null } = {}) {
  const top = Math.max(0, ...results.candidates.map((c) => c.votes));
  const seen = new Set();
  let previous = null;
  for (const candidate of results.candidates) {
    const key = String(candidate.id);
    seen.add(key);
    let li = list.querySelector(`:scope > [data-candidate="${key}"]`);
    if (!li) {
      li = row(candidate);
      li.querySelector(".bar-fill").style.width = "0%";
    }
    // keep the rows in the results' order (by candidate id)
    if (previous ? previous.nextSibling !== li : list.firstChild !== li) {
      if (previous) previous.after(li);
      else list.prepend(li);
    }
    previous = li;
    const info = details.get(candidate.id) || {};
    li.querySelector(".bar-name").textContent = candidate.name;
    li.querySelector(".bar-meta").textContent = [info.part, info.team].filter((v) => v && v !== candidate.name).join(" · ");
    const count = li.querySelector(".bar-votes");
    const before = count.dataset.votes;
    count.textContent = votes(candidate.votes);
    count.dataset.votes = String(candidate.votes);
    li.querySelector(".bar-share").textContent = formatShare(candidate.share);
    li.querySelector(".pill-leading").textContent = t("leading");
    li.querySelector(".pill-mine").textContent = t("your_vote");
    li.classList.toggle("is-leading", top > 0 && candidate.votes === top);
    li.classList.toggle("is-mine", mine !== null && candidate.id === mine);
    const fill = li.querySelector(".bar-fill");
    // set after the row is in the page, so that the width animates from where it was
    requestAnimationFrame(() => { fill.style.width = `${Math.max(0, Math.min(1, candidate.share)) * 100}%`; });
    if (before !== undefined && before !== String(candidate.votes)) {
      li.classList.remove("bumped");
      void li.offsetWidth; // restart the highlight
      li.classList.add("bumped");
    }
  }
  for (const li of [...list.children]) {
    if (!seen.has(li.dataset.candidate)) li.remove();
  }
  list.dataset.total = String(results.totalVotes);
  list.dataset.asOf = String(results.asOf);
  return { total: formatNumber(results.totalVotes) };
}
