// gpu-worker studio: the job as JSON, checked as you type; its timeline; the exact frame at
// the playhead, drawn by the worker's renderer; direct edits; render and play.
// Plain JavaScript, no libraries: the page works offline, served by the package alone.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const editor = $("editor");
  const frameImg = $("frame");
  const viewport = $("viewport");
  const boxes = $("boxes");
  const rows = $("rows");
  const rulerTrack = $("rulertrack");
  const timeline = $("timeline");
  const playhead = $("playhead");
  const problemsList = $("problems");

  const S = {
    text: "", // the editor's text
    saved: "", // the text last loaded or saved
    base: null, // hash of the file as last loaded or saved
    job: null, // the parsed job, when it follows the contract
    layout: null, // where the renderer places everything (from the server)
    at: Math.max(0, Number(new URLSearchParams(location.search).get("at")) || 0), // seconds
    wantAt: null, // a frame asked for and not yet fetched
    inflight: false,
    refreshing: 0,
    frameUrl: null,
    frameError: null,
    render: null,
  };

  // Server ---------------------------------------------------------------------------------

  async function api(path, body) {
    const headers = { "X-Studio-Token": token };
    const init = { method: "GET", headers };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init);
  }

  async function apiJson(path, body) {
    const res = await api(path, body);
    let data = {};
    try {
      data = await res.json();
    } catch (_) {
      data = { error: res.statusText };
    }
    if (!res.ok) {
      const err = new Error(data.error || res.statusText);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // Helpers --------------------------------------------------------------------------------

  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const round = (v, digits) => Number(v.toFixed(digits));
  const num = (v, fallback) => (typeof v === "number" && Number.isFinite(v) ? v : fallback);
  const basename = (uri) => String(uri).split(/[\\/]/).pop();

  function status(message, bad) {
    const el = $("status");
    el.textContent = message;
    el.classList.toggle("bad", !!bad);
  }

  function setText(text, fromEditor) {
    S.text = text;
    if (!fromEditor) {
      const top = editor.scrollTop;
      editor.value = text;
      editor.scrollTop = top;
    }
    $("dirty").hidden = S.text === S.saved;
  }

  function writeJob() {
    setText(JSON.stringify(S.job, null, 2) + "\n");
  }

  function showProblems(problems, renderProblem) {
    problemsList.innerHTML = "";
    for (const line of problems) {
      const li = document.createElement("li");
      li.textContent = line;
      problemsList.append(li);
    }
    if (renderProblem) {
      const li = document.createElement("li");
      li.className = "render";
      li.textContent = renderProblem;
      problemsList.append(li);
    }
    if (!problems.length && !renderProblem) {
      const li = document.createElement("li");
      li.className = "ok";
      li.textContent = "valid";
      problemsList.append(li);
    }
    editor.classList.toggle("invalid", problems.length > 0);
  }

  // Validation and layout ------------------------------------------------------------------

  let generation = 0;
  let refreshTimer = null;

  function scheduleRefresh(delay) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, delay);
  }

  async function refresh() {
    const gen = ++generation;
    const text = S.text;
    S.refreshing += 1;
    try {
      const check = await apiJson("/api/validate", { text });
      if (gen !== generation) return;
      if (!check.valid) {
        S.job = null;
        showProblems(check.problems);
        return;
      }
      let layout;
      try {
        layout = await apiJson("/api/layout", { text });
      } catch (err) {
        if (gen !== generation) return;
        S.job = null;
        showProblems([], err.message);
        return;
      }
      if (gen !== generation) return;
      S.job = JSON.parse(text);
      S.layout = layout;
      showProblems([]);
      fitViewport();
      drawTimeline();
      requestFrame(Math.min(S.at, lastFrameTime()));
    } catch (err) {
      status(err.message, true);
    } finally {
      S.refreshing -= 1;
    }
  }

  function lastFrameTime() {
    const L = S.layout;
    return L ? (L.frames - 1) / L.fps : 0;
  }

  // Frames ---------------------------------------------------------------------------------

  function requestFrame(at) {
    S.at = at;
    S.wantAt = at;
    drawPlayhead();
    drawBoxes();
    if (!S.inflight) pump();
  }

  async function pump() {
    S.inflight = true;
    try {
      while (S.wantAt !== null) {
        const at = S.wantAt;
        S.wantAt = null;
        if (!S.job) break;
        const started = performance.now();
        try {
          const res = await api("/api/frame", { text: S.text, at });
          if (!res.ok) {
            const data = await res.json().catch(() => ({}));
            throw new Error(data.error || res.statusText);
          }
          const blob = await res.blob();
          const url = URL.createObjectURL(blob);
          frameImg.src = url;
          await frameImg.decode();
          if (S.frameUrl) URL.revokeObjectURL(S.frameUrl);
          S.frameUrl = url;
          const index = res.headers.get("X-Frame-Index");
          const time = Number(res.headers.get("X-Frame-Time"));
          const ms = Math.round(performance.now() - started);
          frameImg.dataset.at = String(at);
          frameImg.dataset.index = index;
          frameImg.dataset.ms = String(ms);
          S.frameError = null;
          $("frameinfo").textContent =
            `${at.toFixed(3)} s · frame ${index} (${time.toFixed(3)} s) · ${ms} ms`;
        } catch (err) {
          S.frameError = err.message;
          $("frameinfo").textContent = err.message;
        }
      }
    } finally {
      S.inflight = false;
    }
  }

  function timeAtX(clientX) {
    const rect = rulerTrack.getBoundingClientRect();
    const L = S.layout;
    if (!L || rect.width <= 0) return 0;
    const t = clamp((clientX - rect.left) / rect.width, 0, 1) * L.duration;
    const n = Math.min(L.frames - 1, Math.floor(t * L.fps + 1e-6));
    return n / L.fps;
  }

  function step(frames) {
    const L = S.layout;
    if (!L) return;
    const n = Math.round(S.at * L.fps) + frames;
    requestFrame(clamp(n, 0, L.frames - 1) / L.fps);
  }

  // The frame view -------------------------------------------------------------------------

  function fitViewport() {
    const L = S.layout;
    if (!L) return;
    const stage = $("stage");
    const availH = stage.clientHeight - 48;
    const availW = Math.max(160, window.innerWidth * 0.55);
    const scale = Math.min(availH / L.height, availW / L.width);
    viewport.style.width = `${Math.floor(L.width * scale)}px`;
    viewport.style.height = `${Math.floor(L.height * scale)}px`;
  }

  const visibleAt = (start, end, t) => t >= start - 1e-6 && t < end - 1e-6;

  function drawBoxes() {
    boxes.innerHTML = "";
    const L = S.layout;
    if (!L || !S.job) return;
    // Overlays lie under the texts, as the renderer draws them.
    for (const [kind, placed, specs] of [
      ["overlay", L.overlays || [], S.job.overlays || []],
      ["text", L.texts, S.job.texts || []],
    ]) {
      for (const item of placed) {
        const spec = specs[item.index];
        if (!spec || !visibleAt(item.start, item.end, S.at)) continue;
        const [x, y, w, h] = item.box;
        const box = document.createElement("div");
        box.className = `box ${kind}`;
        box.dataset.kind = kind;
        box.dataset.index = String(item.index);
        box.style.left = `${(x / L.width) * 100}%`;
        box.style.top = `${(y / L.height) * 100}%`;
        box.style.width = `${(w / L.width) * 100}%`;
        box.style.height = `${(h / L.height) * 100}%`;
        box.title = "drag to move (x, y)";
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = `${kind} ${item.index}`;
        box.append(tag);
        dragOnFrame(box, spec);
        boxes.append(box);
      }
    }
  }

  function dragOnFrame(box, spec) {
    box.addEventListener("pointerdown", (down) => {
      if (down.button !== 0) return;
      down.preventDefault();
      down.stopPropagation();
      box.setPointerCapture(down.pointerId);
      box.classList.add("dragging");
      const x0 = num(spec.x, 0.5);
      const y0 = num(spec.y, 0.5);
      const move = (ev) => {
        const dx = (ev.clientX - down.clientX) / viewport.clientWidth;
        const dy = (ev.clientY - down.clientY) / viewport.clientHeight;
        spec.x = round(clamp(x0 + dx, 0, 1), 4);
        spec.y = round(clamp(y0 + dy, 0, 1), 4);
        const px = (spec.x - x0) * viewport.clientWidth;
        const py = (spec.y - y0) * viewport.clientHeight;
        box.style.transform = `translate(${px}px, ${py}px)`;
        writeJob();
        requestFrame(S.at);
      };
      const up = () => {
        box.removeEventListener("pointermove", move);
        box.removeEventListener("pointerup", up);
        box.removeEventListener("pointercancel", up);
        refresh();
      };
      box.addEventListener("pointermove", move);
      box.addEventListener("pointerup", up);
      box.addEventListener("pointercancel", up);
    });
  }

  // The timeline ---------------------------------------------------------------------------

  function niceStep(duration) {
    for (const s of [0.5, 1, 2, 5, 10, 15, 30, 60]) if (duration / s <= 16) return s;
    return 120;
  }

  function captionItems(captions) {
    if (Array.isArray(captions)) return captions.filter((c) => c && typeof c === "object");
    if (captions && typeof captions === "object") {
      for (const value of Object.values(captions)) {
        if (Array.isArray(value) && value.some((c) => c && typeof c === "object")) {
          return value.filter((c) => c && typeof c === "object");
        }
      }
    }
    return [];
  }

  function drawTimeline() {
    const L = S.layout;
    rows.innerHTML = "";
    rulerTrack.innerHTML = "";
    if (!L || !S.job) return;
    const D = L.duration;
    const stepS = niceStep(D);
    for (let t = 0; t <= D + 1e-9; t += stepS) {
      const tick = document.createElement("div");
      tick.className = "tick";
      tick.style.left = `${(t / D) * 100}%`;
      const label = document.createElement("span");
      label.textContent = `${round(t, 1)} s`;
      tick.append(label);
      rulerTrack.append(tick);
    }
    const job = S.job;

    addRow("clips", L.clips.map((c) => ({
      kind: "clip", index: c.index, start: c.start, end: c.end,
      label: basename(c.uri), title: `clips[${c.index}] ${c.uri}`, handles: "r",
      edit: (side, dt) => {
        const clip = job.clips[c.index];
        clip.duration = round(Math.max(0.1, c.end - c.start + dt), 3);
        return [c.start, c.start + clip.duration];
      },
    })));

    const transitions = L.clips
      .filter((c) => c.index > 0 && c.transition.type !== "cut")
      .map((c) => {
        const d = c.transition.duration;
        const cross = c.transition.type === "crossfade";
        const span = (dd) => (cross ? [c.start, c.start + dd] : [c.start - dd / 2, c.start + dd / 2]);
        const [start, end] = span(d);
        return {
          kind: "transition", index: c.index, start, end,
          label: `${c.transition.type} ${round(d, 2)} s`,
          title: `clips[${c.index}].transition`, handles: "lr",
          edit: (side, dt) => {
            const k = (cross ? 1 : 2) * (side === "r" ? dt : -dt);
            const tr = job.clips[c.index].transition;
            tr.duration = round(clamp(d + k, 0.05, 10), 3);
            return span(tr.duration);
          },
        };
      });
    if (transitions.length) addRow("transitions", transitions);

    for (const t of L.texts) {
      const spec = job.texts[t.index];
      addRow(`text ${t.index}`, [timed("text", t.index, spec, t.start, t.end, spec.text,
        `texts[${t.index}]`)]);
    }

    for (const o of L.overlays || []) {
      const spec = job.overlays[o.index];
      addRow(`overlay ${o.index}`, [timed("overlay", o.index, spec, o.start, o.end,
        basename(spec.uri), `overlays[${o.index}]`)]);
    }

    if (job.captions !== undefined && job.captions !== null) {
      const items = captionItems(job.captions);
      if (items.length) {
        addRow("captions", items.map((item, i) => timed("caption", i, item,
          num(item.start, 0), Math.min(num(item.end, D), D), item.text || `cue ${i}`,
          `captions ${i}`)));
      } else {
        const uri = job.captions.uri || "";
        addRow("captions", [{ kind: "caption", index: 0, start: 0, end: D,
          label: uri ? basename(uri) : "captions", title: "captions", handles: "" }]);
      }
    }
    drawPlayhead();
    drawBoxes();
  }

  function timed(kind, index, obj, start, end, label, title) {
    return {
      kind, index, start, end, label: String(label), title, handles: "lr",
      edit: (side, dt) => {
        if (side === "l") obj.start = round(clamp(start + dt, 0, end - 0.05), 3);
        else obj.end = round(Math.max(start + 0.05, end + dt), 3);
        return [num(obj.start, start), num(obj.end, end)];
      },
    };
  }

  function addRow(name, bars) {
    const L = S.layout;
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    row.append(label, track);
    for (const spec of bars) {
      const bar = document.createElement("div");
      bar.className = `bar ${spec.kind}`;
      bar.dataset.kind = spec.kind;
      bar.dataset.index = String(spec.index);
      bar.title = spec.title;
      bar.textContent = spec.label;
      place(bar, spec.start, spec.end, L.duration);
      for (const side of spec.handles) {
        const handle = document.createElement("div");
        handle.className = `handle ${side}`;
        handle.dataset.side = side;
        dragEnd(handle, bar, spec, side);
        bar.append(handle);
      }
      track.append(bar);
    }
    rows.append(row);
  }

  function place(bar, start, end, duration) {
    bar.style.left = `${(start / duration) * 100}%`;
    bar.style.width = `${(Math.max(0, end - start) / duration) * 100}%`;
  }

  function dragEnd(handle, bar, spec, side) {
    handle.addEventListener("pointerdown", (down) => {
      if (down.button !== 0) return;
      down.preventDefault();
      down.stopPropagation();
      handle.setPointerCapture(down.pointerId);
      const width = rulerTrack.getBoundingClientRect().width;
      const move = (ev) => {
        const dt = ((ev.clientX - down.clientX) / width) * S.layout.duration;
        const [start, end] = spec.edit(side, dt);
        place(bar, start, end, S.layout.duration);
        writeJob();
      };
      const up = () => {
        handle.removeEventListener("pointermove", move);
        handle.removeEventListener("pointerup", up);
        handle.removeEventListener("pointercancel", up);
        refresh();
      };
      handle.addEventListener("pointermove", move);
      handle.addEventListener("pointerup", up);
      handle.addEventListener("pointercancel", up);
    });
  }

  function drawPlayhead() {
    const L = S.layout;
    if (!L) return;
    const rect = rulerTrack.getBoundingClientRect();
    const outer = timeline.getBoundingClientRect();
    const x = rect.left - outer.left + (S.at / L.duration) * rect.width;
    playhead.style.left = `${x}px`;
  }

  // Scrubbing: press anywhere on the timeline and move.
  timeline.addEventListener("pointerdown", (down) => {
    if (down.button !== 0 || !S.layout) return;
    if (!down.target.closest(".track")) return;
    timeline.setPointerCapture(down.pointerId);
    requestFrame(timeAtX(down.clientX));
    const move = (ev) => requestFrame(timeAtX(ev.clientX));
    const up = () => {
      timeline.removeEventListener("pointermove", move);
      timeline.removeEventListener("pointerup", up);
      timeline.removeEventListener("pointercancel", up);
    };
    timeline.addEventListener("pointermove", move);
    timeline.addEventListener("pointerup", up);
    timeline.addEventListener("pointercancel", up);
  });

  // Saving and rendering -------------------------------------------------------------------

  async function save(force) {
    try {
      const r = await apiJson("/api/save", { text: S.text, base: S.base, force: !!force });
      S.base = r.hash;
      S.saved = S.text;
      $("dirty").hidden = true;
      status(`saved ${r.saved}`);
    } catch (err) {
      if (err.status === 409 && !force) {
        if (confirm("The job file changed on disk since it was loaded. Overwrite it?")) {
          return save(true);
        }
        status("not saved: the file changed on disk", true);
        return;
      }
      status(`not saved: ${err.message}`, true);
    }
  }

  async function render() {
    const button = $("render");
    const panel = $("renderpanel");
    const progress = $("progress");
    const info = $("renderinfo");
    const video = $("video");
    panel.hidden = false;
    panel.dataset.state = "starting";
    progress.value = 0;
    info.textContent = "starting…";
    video.removeAttribute("src");
    button.disabled = true;
    try {
      let task = await apiJson("/api/render", { text: S.text });
      while (task.state === "running") {
        await new Promise((resolve) => setTimeout(resolve, 250));
        task = await apiJson("/api/render");
        progress.max = task.total || 1;
        progress.value = task.done;
        info.textContent = `${task.done} / ${task.total || "?"} frames`;
      }
      panel.dataset.state = task.state;
      if (task.state === "done") {
        progress.value = progress.max;
        info.textContent = `rendered in ${task.seconds} s: ${task.output}`;
        video.src = `/api/video?token=${encodeURIComponent(token)}&id=${task.id}`;
        video.play().catch(() => {});
      } else {
        info.textContent = task.error || "the render failed";
      }
    } catch (err) {
      panel.dataset.state = "failed";
      info.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  // Wiring ---------------------------------------------------------------------------------

  editor.addEventListener("input", () => {
    setText(editor.value, true);
    scheduleRefresh(250);
  });

  editor.addEventListener("keydown", (ev) => {
    if (ev.key === "Tab" && !ev.shiftKey) {
      ev.preventDefault();
      const { selectionStart: a, selectionEnd: b } = editor;
      editor.setRangeText("  ", a, b, "end");
      editor.dispatchEvent(new Event("input"));
    }
  });

  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") {
      ev.preventDefault();
      save(false);
      return;
    }
    if (ev.target === editor) return;
    if (ev.key === "ArrowRight") step(ev.shiftKey ? 10 : 1);
    if (ev.key === "ArrowLeft") step(ev.shiftKey ? -10 : -1);
  });

  $("save").addEventListener("click", () => save(false));
  $("render").addEventListener("click", render);
  window.addEventListener("resize", () => {
    fitViewport();
    drawPlayhead();
  });
  window.addEventListener("beforeunload", (ev) => {
    if (S.text !== S.saved) ev.preventDefault();
  });

  // What a test or a tool may ask of the page (read only).
  window.studio = {
    idle: () => !S.inflight && S.wantAt === null && S.refreshing === 0 && refreshTimer === null,
    state: () => ({
      at: S.at,
      index: frameImg.dataset.index === undefined ? null : Number(frameImg.dataset.index),
      valid: S.job !== null,
      frameError: S.frameError,
      text: S.text,
    }),
  };

  (async () => {
    try {
      const job = await apiJson("/api/job");
      $("name").textContent = job.name;
      document.title = `${job.name} · gpu-worker studio`;
      S.base = job.hash;
      S.saved = job.text;
      setText(job.text);
      await refresh();
    } catch (err) {
      status(err.message, true);
    }
  })();
})();
