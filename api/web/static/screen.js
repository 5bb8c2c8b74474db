// The projector view: one poll's live results in large type, with no controls.

import { api } from "./api.js";
import { renderBars } from "./bars.js";
import { explain, formatNumber, initLanguage, t } from "./i18n.js";
import { watchResults } from "./live.js";

const $ = (selector) => document.querySelector(selector);

async function start() {
  initLanguage();
  const found = /^\/polls\/([^/]+)\/screen\/?$/.exec(location.pathname);
  const pollId = found ? decodeURIComponent(found[1]) : "";
  let poll;
  try {
    poll = await api(`/api/v1/polls/${encodeURIComponent(pollId)}`);
  } catch (error) {
    $("#screen-title").textContent = explain(error);
    return;
  }
  document.title = `${poll.title} · vote-ledger`;
  $("#screen-title").textContent = poll.title;
  $("#screen-total-label").textContent = t("total_votes");
  const voteUrl = `${location.host}/polls/${encodeURIComponent(poll.id)}`;
  $("#screen-url").textContent = t("screen_vote_at", { url: voteUrl });
  const details = new Map(poll.candidates.map((c) => [c.id, c]));
  const bars = $("#screen-bars");
  const hidden = $("#screen-hidden");
  const live = $("#screen-live");
  live.textContent = t("connecting");
  watchResults(poll.id, {
    onState(state) {
      document.body.dataset.live = state;
      live.textContent = t(state);
    },
    onResults(results) {
      hidden.hidden = true;
      bars.hidden = false;
      renderBars(bars, results, { details });
      $("#screen-total").textContent = formatNumber(results.totalVotes);
      $("#screen-seq").textContent = t("ledger_position", { seq: results.asOf });
      document.body.dataset.status = results.status || "";
    },
    onHidden(notice) {
      bars.hidden = true;
      bars.replaceChildren();
      hidden.hidden = false;
      hidden.textContent = t(poll.results === "after_vote" ? "screen_hidden_after_vote" : "screen_hidden_after_close");
      $("#screen-total").textContent = "–";
      $("#screen-seq").textContent = t("ledger_position", { seq: notice.asOf });
    },
  });
  document.body.dataset.ready = "true";
}

start();
