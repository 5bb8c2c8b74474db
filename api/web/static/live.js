// A poll's live results: the server's event stream (Server-Sent Events) through EventSource.

/**
 * Watch ``pollId``'s results. ``onResults(results)`` gets each new result, ``onHidden(notice)`` the
 * notice that the caller may not see them yet, ``onState(state)`` one of "connecting", "live",
 * "reconnecting" and "offline". Returns ``{close()}``.
 */
export function watchResults(pollId, { token = null, onResults, onHidden, onState }) {
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  const url = `/api/v1/polls/${encodeURIComponent(pollId)}/results/stream${query}`;
  let source = null;
  let retry = null;
  let closed = false;

  function open() {
    onState("connecting");
    source = new EventSource(url);
    source.addEventListener("open", () => onState("live"));
    source.addEventListener("results", (event) => {
      onState("live");
      onResults(JSON.parse(event.data));
    });
    source.addEventListener("hidden", (event) => {
      onState("live");
      onHidden(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      if (closed) return;
      if (source.readyState === EventSource.CLOSED) {
        // refused (a 4xx or 5xx answer): EventSource gives up, so try again a little later
        onState("offline");
        retry = setTimeout(open, 5000);
      } else {
        onState("reconnecting");
      }
    });
  }

  open();
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      if (source) source.close();
    },
  };
}
