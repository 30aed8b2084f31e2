// baton's player page: hls.js on a session that lives in Redis. It keeps the session token in local storage
// (so a reload resumes), reports its position over the WebSocket, shows the paused/resume state, and
// reconnects after a handoff. A playback token in the page's URL (/watch/<id>?token=...) is passed on when
// it starts a session; a stream not live yet, or a busy address (429), is waited for.
// window.batonPlayer exposes its state (tests read it).
(function () {
  "use strict";
  const root = document.getElementById("player");
  const video = root.querySelector("video");
  const statusEl = document.getElementById("status");
  const playButton = document.getElementById("play");
  const streamId = root.dataset.stream;
  const storageKey = "baton:session:" + streamId;
  const playbackToken = new URLSearchParams(location.search).get("token");
  const REPORT_EVERY_MS = 2000;

  const state = (window.batonPlayer = {
    streamId: streamId,
    sessionId: null,
    token: null,
    streamStartedAt: null,
    resume: null,
    reports: 0,
    handoffs: 0,
    stalls: 0,
    stalledMs: 0,
    stallLog: [],
    wsConnects: 0,
    errors: [],
    playingDate: null,
    position: null,
    ready: false,
    // the fragment playing now is a slate segment (the stream has no input): "waiting for the broadcaster"
    onSlate: false,
    slateSeen: 0,
  });

  function show(text, kind) {
    statusEl.textContent = text;
    statusEl.dataset.state = kind || "live";
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    return (hh ? hh + ":" : "") + String(mm).padStart(hh ? 2 : 1, "0") + ":" + String(ss).padStart(2, "0");
  }

  async function api(path, options) {
    const response = await fetch(path, options);
    const body = await response.json().catch(function () { return null; });
    return { ok: response.ok, status: response.status, body: body, retryAfter: Number(response.headers.get("Retry-After")) || 1 };
  }

  function wait(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  /** The stored session if it is still there, else a new one. */
  async function session() {
    const stored = localStorage.getItem(storageKey);
    if (stored) {
      const id = stored.split(".")[0];
      const r = await api("/api/sessions/" + id, { headers: { Authorization: "Bearer " + stored } });
      if (r.ok) return { token: stored, view: r.body };
    }
    for (;;) {
      const r = await api("/api/sessions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(playbackToken ? { streamId: streamId, token: playbackToken } : { streamId: streamId }),
      });
      if (r.ok) {
        localStorage.setItem(storageKey, r.body.token);
        return { token: r.body.token, view: r.body };
      }
      if (r.status === 404 || r.status === 429 || r.status === 503) {
        show(r.status === 404 ? "Waiting for the stream to start…" : "Busy; retrying…", "paused");
        await wait(r.status === 404 ? 2000 : r.retryAfter * 1000);
        continue;
      }
      throw new Error((r.body && r.body.message) || "could not start a session");
    }
  }

  /** Seconds on the stream's timeline of what is on screen (program date-time based, like the server). */
  function position(hls) {
    const date = hls.playingDate;
    if (!date || state.streamStartedAt === null) return null;
    state.playingDate = date.getTime();
    return (date.getTime() - state.streamStartedAt) / 1000;
  }

  let socket = null;
  let reconnectDelay = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws?session=" + encodeURIComponent(state.token));
    socket.onopen = function () {
      state.wsConnects += 1;
      reconnectDelay = 500;
    };
    socket.onmessage = function (event) {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === "handoff") {
        state.handoffs += 1;
        reconnectDelay = message.reconnectInMs || 500;
      }
    };
    socket.onclose = function () {
      socket = null;
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 5000);
    };
  }

  /** What the viewer experiences, for the node's metrics (stalls, startup, errors by kind): never blocks playback. */
  function experience(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  const ERROR_KINDS = { networkError: "network", mediaError: "media", muxError: "mux", keySystemError: "key" };

  function report(hls) {
    const p = position(hls);
    if (p === null) return;
    state.position = p;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "position", position: p, paused: video.paused }));
      state.reports += 1;
    }
  }

  async function start() {
    if (!window.Hls || !Hls.isSupported()) {
      // Safari and iOS play HLS natively; the session still rides in the URL
      const { token } = await session();
      state.token = token;
      video.src = "/live/" + streamId + "/index.m3u8?session=" + encodeURIComponent(token);
      show("Playing");
      return;
    }
    const { token, view } = await session();
    state.token = token;
    state.sessionId = view.id;
    state.streamStartedAt = view.streamStartedAt;
    state.resume = view.resume;
    if (view.paused && view.resume) {
      show(view.resume.inWindow
        ? "Resuming where you paused (" + clock(view.resume.position) + ")"
        : "Your pause point has left the live window; resuming at the oldest point available", "paused");
    }
    // cmcd: hls.js sends CTA-5004 client data (buffer starvation, buffer length, bitrate) with each request
    const hls = new Hls({ liveSyncDurationCount: 3, cmcd: {} });
    state.hls = hls;
    hls.on(Hls.Events.ERROR, function (_event, data) {
      state.errors.push({ type: data.type, details: data.details, fatal: data.fatal, at: Date.now() });
      // a stall is reported once, from the video element below; other errors by hls.js's kind
      if (data.details !== "bufferStalledError") experience({ type: "player_error", kind: ERROR_KINDS[data.type] || "other" });
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        show("Reconnecting…", "error");
        setTimeout(function () { hls.startLoad(); }, 1000);
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        show("Playback failed: " + data.details, "error");
      }
    });
    hls.on(Hls.Events.MANIFEST_PARSED, function () {
      state.ready = true;
      video.play().catch(function () {
        playButton.hidden = false;
        show("Press play to start", "paused");
      });
    });
    // a slate segment carries baton's own tag (#EXT-BATON-SLATE, which players ignore): while one plays the
    // stream has no input, and the page says so; the first live segment after it clears that
    hls.on(Hls.Events.FRAG_CHANGED, function (_event, data) {
      const slate = data.frag.tagList.some(function (tag) { return tag[0] === "EXT-BATON-SLATE"; });
      if (slate === state.onSlate) return;
      state.onSlate = slate;
      if (slate) {
        state.slateSeen += 1;
        show("Waiting for the broadcaster…", "slate");
      } else if (!video.paused) {
        show("Playing");
      }
    });
    hls.loadSource("/live/" + streamId + "/index.m3u8?session=" + encodeURIComponent(token));
    hls.attachMedia(video);
    connect();

    if (state.streamStartedAt === null) {
      // the session began before the stream: learn its clock once it is live
      const id = setInterval(async function () {
        const r = await api("/api/sessions/" + state.sessionId, { headers: { Authorization: "Bearer " + token } });
        if (r.ok && r.body.streamStartedAt !== null) {
          state.streamStartedAt = r.body.streamStartedAt;
          clearInterval(id);
        }
      }, 2000);
    }
    setInterval(function () { if (!video.paused) report(hls); }, REPORT_EVERY_MS);
    video.addEventListener("pause", function () {
      report(hls);
      show("Paused at " + clock(state.position || 0) + ". Come back any time: you resume here.", "paused");
    });
    const pageStartedAt = Date.now();
    let started = false;
    video.addEventListener("playing", function () {
      report(hls);
      show(state.onSlate ? "Waiting for the broadcaster…" : "Playing", state.onSlate ? "slate" : "live");
      if (!started) {
        started = true;
        experience({ type: "startup", ms: Math.round(Date.now() - pageStartedAt) });
      }
    });
    video.addEventListener("seeked", function () { report(hls); });
    // a stall: playback wanted to go on and had no data ("waiting") until it could ("playing")
    let waitingSince = null;
    video.addEventListener("waiting", function () {
      if (waitingSince === null && state.ready && video.currentTime > 0) {
        waitingSince = Date.now();
        state.stalls += 1;
        experience({ type: "stall" });
      }
    });
    video.addEventListener("playing", function () {
      if (waitingSince !== null) {
        state.stalledMs += Date.now() - waitingSince;
        state.stallLog.push({ at: waitingSince, ms: Date.now() - waitingSince });
        waitingSince = null;
      }
    });
    playButton.addEventListener("click", function () {
      playButton.hidden = true;
      video.play();
    });
  }

  start().catch(function (error) {
    show(error.message, "error");
    state.errors.push({ type: "page", details: error.message, fatal: true, at: Date.now() });
  });
})();
