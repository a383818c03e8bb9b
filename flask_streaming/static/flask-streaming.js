// flask-streaming.js: the browser client of flask_streaming (an ES module, no build step).
//
//   import { StreamingClient, source } from "/streaming/client.js?v=...";
//
// * StreamingClient: segmented uploads (svelte-stream's client shape:
//   getStarted(), send(id, readableStream, callback)) plus upload(blob) that
//   resumes from the server's session status after a network failure.
// * source(url, options): Server-Sent Events over fetch (custom headers,
//   POST), a spec-exact parser, Svelte-compatible stores from select(), a
//   shared connection per URL, reconnect with Last-Event-ID.
//
// In Svelte, a selection is a store:
//
//   <script>
//     import { source } from "/streaming/client.js";
//     const price = source("/streaming/events/prices").select("tick").json();
//   </script>
//   {$price?.value}
//
// In a Jinja template, import from "{{ streaming_client_url() }}" (a URL
// with the content hash, cached for a year).

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
// A 500 is retried only for these codes (flask_streaming.errors.TRANSIENT_500_CODES).
const TRANSIENT_500_CODES = new Set(["hook_failed", "storage_error"]);
const DEFAULT_BACKOFF = { retries: 5, initial: 250, factor: 2, max: 10000 };

/** An HTTP error answer from the server; `body` is its parsed JSON (or null). */
export class StreamingError extends Error {
  constructor(message, { status = 0, body = null, response = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "StreamingError";
    this.status = status;
    this.body = body;
    this.response = response;
    this.code = body && typeof body === "object" ? body.error ?? null : null;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? abortError());
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason ?? abortError());
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function abortError() {
  return new DOMException("The operation was aborted.", "AbortError");
}

function isAbort(error, signal) {
  return (signal && signal.aborted) || error?.name === "AbortError";
}

function delayFor(backoff, attempt) {
  const base = Math.min(backoff.max, backoff.initial * backoff.factor ** attempt);
  return base / 2 + Math.random() * (base / 2); // "equal jitter"
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: "bad_json", message: text.slice(0, 200) };
  }
}

function mergeHeaders(...sources) {
  const out = new Headers();
  for (const src of sources) {
    if (!src) continue;
    new Headers(src).forEach((value, name) => out.set(name, value));
  }
  return out;
}

function toBody(chunk) {
  if (chunk == null) return new Uint8Array(0);
  if (typeof chunk === "string") return new TextEncoder().encode(chunk);
  return chunk; // Blob, ArrayBuffer, a typed array
}

function bodySize(body) {
  if (body instanceof Blob) return body.size;
  return body.byteLength ?? 0;
}

async function sha256Header(body) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return null; // only in secure contexts (https, localhost)
  const bytes = body instanceof Blob ? await body.arrayBuffer() : body;
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
  let bin = "";
  for (const b of digest) bin += String.fromCharCode(b);
  return "sha256=" + btoa(bin);
}

/**
 * Segmented uploads to a flask_streaming server.
 *
 * @param url the uploads endpoint, e.g. "/streaming/uploads".
 * @param init fetch options added to every request (headers, credentials, ...).
 * @param backoff {retries, initial, factor, max}: how each request is retried
 *   on a network error or a 5xx/408/429 answer (never on another 4xx).
 */
export class StreamingClient {
  constructor(url = "/streaming/uploads", init = {}, backoff = {}) {
    this.url = String(url).replace(/\/+$/, "");
    this.init = init;
    this.backoff = { ...DEFAULT_BACKOFF, ...backoff };
  }

  sessionUrl(id) {
    return `${this.url}/${encodeURIComponent(id)}`;
  }

  /** fetch with this client's init, retried with exponential backoff. */
  async request(url, options = {}, { signal, retryConflict = false } = {}) {
    const { backoff } = this;
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(url, {
          ...this.init,
          ...options,
          headers: mergeHeaders(this.init.headers, options.headers),
          signal,
        });
      } catch (error) {
        if (isAbort(error, signal) || attempt >= backoff.retries) throw error;
        await sleep(delayFor(backoff, attempt), signal);
        continue;
      }
      if (response.ok) return response;
      const retryable =
        (response.status === 500
          ? TRANSIENT_500_CODES.has((await readJson(response.clone()))?.error)
          : RETRYABLE_STATUS.has(response.status)) ||
        (retryConflict && response.status === 409 && response.headers.get("content-type")?.includes("json"));
      if (retryable && attempt < backoff.retries) {
        const body = response.status === 409 ? await readJson(response.clone()) : null;
        if (response.status !== 409 || body?.error === "retry") {
          const after = Number(response.headers.get("Retry-After"));
          const wait = after > 0 ? Math.min(after * 1000, backoff.max) : delayFor(backoff, attempt);
          await sleep(wait, signal);
          continue;
        }
      }
      const body = await readJson(response.clone());
      const message = body?.message || `${response.status} ${response.statusText}`;
      throw new StreamingError(message, { status: response.status, body, response });
    }
  }

  /** Open a session the svelte-stream way (GET): resolves to its id. */
  async getStarted(options = {}) {
    const response = await this.request(this.url, { method: "GET" }, options);
    return (await response.json()).streamId;
  }

  /** Open a session with what the server may check: resolves to its status. */
  async create({ filename, contentType, size, metadata } = {}, options = {}) {
    const body = JSON.stringify({ filename, content_type: contentType, size, metadata });
    const response = await this.request(
      this.url,
      { method: "POST", headers: { "Content-Type": "application/json" }, body },
      options,
    );
    return response.json();
  }

  /** The session's status: `contiguous` segments are safely stored. */
  async status(id, options = {}) {
    const response = await this.request(this.sessionUrl(id), { method: "GET" }, options);
    return response.json();
  }

  /** Abort a session: the server removes its data. */
  async abort(id, options = {}) {
    const response = await this.request(this.sessionUrl(id), { method: "DELETE" }, options);
    return response.json();
  }

  /** Send one segment (retried); resolves to the server's Response. */
  async sendSegment(id, index, chunk, { done = false, signal, checksum = true } = {}) {
    const body = toBody(chunk);
    const headers = {
      "Content-Type": "application/octet-stream",
      "X-Stream-Id": id,
      "X-Stream-Segment": String(index),
      "X-Stream-Done": done ? "true" : "false",
    };
    if (checksum && bodySize(body) > 0) {
      const value = await sha256Header(body);
      if (value) headers["X-Stream-Checksum"] = value;
    }
    return this.request(this.url, { method: "POST", headers, body }, { signal, retryConflict: true });
  }

  /**
   * svelte-stream's send: every chunk of `readable` becomes the next
   * segment; `callback(response)` gets each partial answer (in order); then
   * an empty done request completes the upload and its Response is returned.
   */
  async send(id, readable, callback, { signal } = {}) {
    const reader = readable.getReader();
    const callbacks = [];
    let index = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (value == null || bodySize(toBody(value)) === 0) continue;
        const response = await this.sendSegment(id, index++, value, { signal });
        if (callback) callbacks.push(Promise.resolve().then(() => callback(response)));
      }
    } catch (error) {
      reader.cancel(error).catch(() => {});
      throw error;
    } finally {
      reader.releaseLock?.();
    }
    await Promise.all(callbacks);
    return this.sendSegment(id, index, null, { done: true, signal });
  }

  /**
   * Upload a File or Blob in segments of `segmentSize` bytes. After a
   * network failure it asks the server which segments it has and goes on
   * from there; pass `streamId` to resume an earlier session.
   * Resolves to the final JSON answer (the final hooks' results included).
   */
  async upload(blob, options = {}) {
    const {
      segmentSize = 8 * 1024 * 1024,
      onProgress,
      signal,
      metadata,
      filename = blob.name,
      contentType = blob.type || undefined,
      checksum = true,
    } = options;
    const total = blob.size;
    const count = Math.max(1, Math.ceil(total / segmentSize));
    let id = options.streamId;
    let index = 0;
    if (id) {
      index = Math.min((await this.status(id, { signal })).contiguous ?? 0, count);
    } else {
      id = (await this.create({ filename, contentType, size: total, metadata }, { signal })).streamId;
    }
    const progress = (response) =>
      onProgress?.({ streamId: id, loaded: Math.min(total, index * segmentSize), total, segment: index, count, response });
    progress(null);
    let failures = 0;
    let resend = [];
    for (;;) {
      try {
        while (resend.length) {
          const i = resend[0];
          await this.sendSegment(id, i, blob.slice(i * segmentSize, (i + 1) * segmentSize), { signal, checksum });
          resend.shift();
        }
        while (index < count) {
          const chunk = blob.slice(index * segmentSize, (index + 1) * segmentSize);
          const response = await this.sendSegment(id, index, chunk, { signal, checksum });
          const answer = await response.json();
          index += 1;
          failures = 0;
          progress(answer);
        }
        const final = await (await this.sendSegment(id, count, null, { done: true, signal })).json();
        onProgress?.({ streamId: id, loaded: total, total, segment: count, count, response: final, done: true });
        return final;
      } catch (error) {
        if (isAbort(error, signal)) throw error;
        if (error instanceof StreamingError) {
          if (error.status === 409 && error.code === "missing_segments" && Array.isArray(error.body?.missing)) {
            resend = error.body.missing.slice();
            if (++failures > this.backoff.retries) throw error;
            continue;
          }
          throw error; // a 4xx answer: retrying will not help
        }
        // The network failed beyond the per-request retries: wait, ask the
        // server what it has, and go on from its first missing segment.
        if (++failures > this.backoff.retries) throw error;
        await sleep(delayFor(this.backoff, failures), signal);
        try {
          const status = await this.status(id, { signal });
          index = Math.min(status.contiguous ?? index, count);
        } catch (statusError) {
          if (isAbort(statusError, signal) || statusError instanceof StreamingError) throw statusError;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Server-Sent Events over fetch

/**
 * A spec-exact event-stream parser (WHATWG HTML, "interpreting an event
 * stream"), held to the same conformance table as the Python parser
 * (flask_streaming.sse_parser): one leading BOM stripped, CR/LF/CRLF line
 * ends, comments ignored, `retry` only when all ASCII digits (applied when
 * its line is parsed), an `id` containing NUL ignored. An `id` line sets the
 * last event ID *buffer*; at every blank line the last event ID *string*
 * (`lastEventId`, what is resent) takes the buffer's value, even when no
 * event is dispatched (no data); `end()` discards an unterminated block,
 * an `id` line in it included. Chunk boundaries never change the result.
 * The `channel` field (flask_streaming channels) is kept per event.
 * `onEvent({type, data, lastEventId, channel})`, `onRetry(ms)`,
 * `onLastEventId(string)` at every blank line.
 */
export class EventStreamParser {
  constructor({ onEvent, onRetry, onComment, onLastEventId, lastEventId = "" } = {}) {
    this.onEvent = onEvent;
    this.onLastEventId = onLastEventId;
    this.onRetry = onRetry;
    this.onComment = onComment;
    this.lastEventId = lastEventId; // the last event ID string
    this.idBuffer = lastEventId; // the last event ID buffer
    this.reset();
  }

  reset() {
    this.decoder = new TextDecoder("utf-8"); // strips one leading BOM
    this.buffer = "";
    this.pendingCR = false;
    this.data = [];
    this.hasData = false;
    this.type = "";
    this.channel = null;
  }

  /** Feed bytes (Uint8Array) or a string. */
  feed(chunk) {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!text) return;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (text[0] === "\n") text = text.slice(1);
    }
    let buf = this.buffer + text;
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = buf.slice(start, i);
      if (c === 13) {
        if (i + 1 < buf.length) {
          if (buf.charCodeAt(i + 1) === 10) i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
      this.line(line);
    }
    this.buffer = buf.slice(start);
  }

  /** The stream ended: an unterminated block is discarded, as the spec says (an `id` in it too). */
  end() {
    this.decoder.decode();
    this.buffer = "";
    this.pendingCR = false;
    this.data = [];
    this.hasData = false;
    this.type = "";
    this.channel = null;
    this.idBuffer = this.lastEventId;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line[0] === ":") return this.onComment?.(line.slice(1));
    const colon = line.indexOf(":");
    let name = line;
    let value = "";
    if (colon !== -1) {
      name = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
    }
    switch (name) {
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "event":
        this.type = value;
        break;
      case "id":
        if (!value.includes("\0")) this.idBuffer = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.onRetry?.(parseInt(value, 10));
        break;
      case "channel":
        this.channel = value;
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  dispatch() {
    // The last event ID string takes the buffer's value at every blank
    // line, data or not (an id-only block sets what is resent).
    this.lastEventId = this.idBuffer;
    this.onLastEventId?.(this.lastEventId);
    if (!this.hasData) {
      this.type = "";
      this.channel = null;
      return;
    }
    const event = {
      type: this.type || "message",
      data: this.data.join("\n"),
      lastEventId: this.lastEventId,
      id: this.lastEventId,
      channel: this.channel,
    };
    this.data = [];
    this.hasData = false;
    this.type = "";
    this.channel = null;
    this.onEvent?.(event);
  }
}

const connections = new Map();

/** `text` as the header value fetch sends as its UTF-8 bytes (a ByteString: one char per byte). */
export function utf8HeaderValue(text) {
  let out = "";
  for (const byte of new TextEncoder().encode(text)) out += String.fromCharCode(byte);
  return out;
}

/** Whether a Content-Type value's MIME type (parameters ignored, any case) is text/event-stream. */
export function isEventStream(contentType) {
  return (contentType || "").split(";")[0].trim().toLowerCase() === "text/event-stream";
}

function absolute(url) {
  try {
    return new URL(url, globalThis.location?.href).href;
  } catch {
    return String(url);
  }
}

/**
 * A readable store (Svelte's store contract: `subscribe(run)` calls `run`
 * at once with the current value and after every event, and returns the
 * unsubscribe function). While it has subscribers it keeps the shared
 * connection open.
 */
class Store {
  constructor(connection, initial, attach) {
    this.connection = connection;
    this.value = initial;
    this.hasEvent = false; // the value came from an event (not the initial one)
    this.attach = attach; // (set) => detach
    this.subscribers = new Set();
    this.detach = null;
  }

  add(subscriber) {
    this.subscribers.add(subscriber);
    if (this.subscribers.size === 1) this.detach = this.attach((value) => this.set(value));
    return () => {
      if (!this.subscribers.delete(subscriber)) return;
      if (this.subscribers.size === 0 && this.detach) {
        this.detach();
        this.detach = null;
      }
    };
  }

  subscribe(run, invalidate) {
    const remove = this.add({ run, invalidate });
    this.connection.retain();
    run(this.value);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      remove();
      this.connection.release();
    };
  }

  set(value) {
    this.value = value;
    this.hasEvent = true;
    const subscribers = [...this.subscribers];
    for (const s of subscribers) s.invalidate?.();
    for (const s of subscribers) s.run(value);
  }

  /**
   * A store of `fn(data, previous)` for every event this store sees
   * (`initial` until the first one).
   */
  transform(fn, initial = undefined) {
    return new Store(this.connection, initial, (set) => {
      let previous = initial;
      const apply = (value) => {
        previous = fn(value, previous);
        set(previous);
      };
      const remove = this.add({ run: apply });
      if (this.hasEvent) apply(this.value);
      return remove;
    });
  }

  /**
   * A store of each event's data parsed as JSON (`null` before the first).
   * When parsing fails, `or({error, raw, previous})` gives the value
   * (default: the previous one).
   */
  json(or = ({ previous }) => previous) {
    return this.transform((raw, previous) => {
      try {
        return JSON.parse(raw);
      } catch (error) {
        return or({ error, raw, previous });
      }
    }, null);
  }
}

class Connection {
  constructor(url, options, key) {
    this.url = url;
    this.options = options;
    this.key = key;
    this.refs = 0;
    this.listeners = new Map(); // type -> Set(fn); "*" gets all
    this.lastEventId = options.lastEventId ?? "";
    this.retry = options.retry ?? 3000;
    this.readyState = 2; // CLOSED
    this.controller = null;
    this.timer = null;
    this.failures = 0;
    this.closedByUser = false;
    this.hooks = new Set();
  }

  on(type, fn) {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(event) {
    for (const key of [event.type, "*"]) {
      const set = this.listeners.get(key);
      if (set) for (const fn of [...set]) fn(event);
    }
  }

  retain() {
    this.refs += 1;
    if (this.refs === 1) {
      this.closedByUser = false;
      this.connect();
    }
  }

  release() {
    this.refs = Math.max(0, this.refs - 1);
    if (this.refs === 0) this.disconnect();
  }

  connect() {
    if (this.controller || this.timer) return;
    this.closedByUser = false;
    this.open();
  }

  disconnect() {
    clearTimeout(this.timer);
    this.timer = null;
    this.controller?.abort();
    this.controller = null;
    this.readyState = 2;
  }

  /** close() from the user: stop, and let the `close` hooks decide. */
  close() {
    this.closedByUser = true;
    this.disconnect();
    this.closed({ local: true, error: null });
  }

  closed(info) {
    const connect = () => {
      this.closedByUser = false;
      this.connect();
    };
    for (const hook of [...this.hooks]) {
      try {
        hook({ ...info, connect, lastEventId: this.lastEventId });
      } catch (error) {
        console.error(error);
      }
    }
  }

  schedule(error) {
    const { reconnect = true } = this.options;
    this.readyState = 0; // CONNECTING
    this.controller = null;
    if (this.closedByUser || this.refs === 0) return;
    if (this.hooks.size) {
      this.readyState = 2;
      this.closed({ local: false, error });
      return;
    }
    if (!reconnect) {
      this.readyState = 2;
      return;
    }
    // The server's retry, doubled for each failure in a row (up to a minute).
    const wait = this.failures ? Math.min(60000, this.retry * 2 ** (this.failures - 1)) : this.retry;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.refs > 0 && !this.closedByUser) this.open();
    }, wait);
  }

  /** Fail the connection, as EventSource does: no reconnect; `close` hooks may `connect()`. */
  fail(error, extra = {}) {
    this.readyState = 2;
    this.controller = null;
    this.options.onError?.(error);
    this.closed({ local: false, error, ...extra });
  }

  async open() {
    const controller = new AbortController();
    this.controller = controller;
    this.readyState = 0;
    const { method = "GET", headers, body, withCredentials = false, onOpen, onError, retryOnStatus = true } = this.options;
    let h;
    try {
      // Only safelisted headers by default: no CORS preflight for a plain GET.
      h = mergeHeaders({ Accept: "text/event-stream" }, headers);
      // The last event ID string as UTF-8 (WHATWG), as EventSource sends it.
      if (this.lastEventId) h.set("Last-Event-ID", utf8HeaderValue(this.lastEventId));
    } catch (e) {
      this.fail(e); // bad headers from the caller: retrying cannot help
      return;
    }
    const parser = new EventStreamParser({
      lastEventId: this.lastEventId,
      onEvent: (event) => this.emit(event),
      onRetry: (ms) => {
        this.retry = ms;
      },
      onLastEventId: (id) => {
        this.lastEventId = id;
      },
    });
    let error = null;
    try {
      const response = await fetch(this.url, {
        method,
        headers: h,
        body: body == null ? undefined : typeof body === "string" || body instanceof Blob || body instanceof FormData || body instanceof URLSearchParams ? body : JSON.stringify(body),
        credentials: withCredentials ? "include" : "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.status === 204) {
        // "No Content": the server asks the client to stop reconnecting.
        response.body?.cancel().catch(() => {});
        this.readyState = 2;
        this.controller = null;
        this.closed({ local: false, error: null, status: 204 });
        return;
      }
      const type = response.headers.get("content-type") || "";
      if (response.status !== 200 || !isEventStream(type)) {
        // Never read a body that may be an endless stream: only a JSON error.
        let detail = null;
        if (type.toLowerCase().includes("json")) detail = await readJson(response).catch(() => null);
        else response.body?.cancel().catch(() => {});
        const err = new StreamingError(detail?.message || `event stream answered ${response.status} ${type}`.trim(), {
          status: response.status,
          body: detail,
          response,
        });
        // Documented deviation from EventSource (which fails the connection
        // on any status but 200): a restarting server or its proxy answers
        // these for a moment, so reconnect unless retryOnStatus is false.
        if (retryOnStatus && RETRYABLE_STATUS.has(response.status)) throw err;
        // Any other status, a 2xx other than 200, or another Content-Type:
        // fail the connection as EventSource does (no events, no reconnect).
        this.fail(err);
        return;
      }
      this.readyState = 1; // OPEN
      this.failures = 0;
      onOpen?.(response);
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch (e) {
      if (controller.signal.aborted) return; // closed on purpose
      error = e;
      this.failures += 1;
      onError?.(e);
    } finally {
      parser.end(); // an unterminated block (an id line in it too) is discarded
    }
    if (this.controller !== controller) return;
    this.schedule(error);
  }
}

/** A source: one shared connection, seen through stores. */
export class Source {
  constructor(connection, options) {
    this.connection = connection;
    if (options.close) {
      connection.hooks.add(options.close);
    }
  }

  /** A store whose value is the data of the latest event of `type` ("" before any). */
  select(type = "message") {
    return new Store(this.connection, "", (set) => this.connection.on(type, (event) => set(event.data)));
  }

  /** A store of the latest whole event ({type, data, lastEventId, channel}) of any type. */
  events(type = "*") {
    return new Store(this.connection, null, (set) => this.connection.on(type, set));
  }

  /** Svelte store contract on the source itself: the latest event of any type. */
  subscribe(run, invalidate) {
    return this.events().subscribe(run, invalidate);
  }

  /** Call `fn(event)` for each event of `type` ("*" for all); keeps the connection open. Returns an unsubscribe function. */
  on(type, fn) {
    const off = this.connection.on(type, fn);
    this.connection.retain();
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      off();
      this.connection.release();
    };
  }

  /** Close the connection now; `close` hooks run and may `connect()` again. */
  close() {
    this.connection.close();
  }

  /** Open the connection (again) if it has subscribers. */
  connect() {
    this.connection.connect();
  }

  get readyState() {
    return this.connection.readyState;
  }

  get lastEventId() {
    return this.connection.lastEventId;
  }

  get url() {
    return this.connection.url;
  }
}

/**
 * Server-Sent Events over fetch.
 *
 * Options: method, headers, body, withCredentials, reconnect (default true),
 * retry (initial reconnection time, ms), lastEventId (resume from),
 * onOpen(response), onError(error), close({connect, local, error}),
 * cache (default true: sources with the same method, URL, headers and body
 * share one connection), retryOnStatus (default true).
 *
 * Like EventSource, the connection fails for good (no events, no reconnect;
 * onError, then the close hooks) when the answer is not a 200 with the
 * text/event-stream type, e.g. a 205, 210 or 299, a 404, or
 * Content-Type: text/plain; a 204 closes it quietly. One documented
 * deviation: after 408, 425, 429, 500, 502, 503 or 504 (a restarting server
 * or its proxy) it reconnects with backoff; retryOnStatus: false fails the
 * connection there too, exactly as EventSource.
 */
export function source(url, options = {}) {
  const href = absolute(url);
  const { method = "GET", headers, body, cache = true } = options;
  const key = [method.toUpperCase(), href, JSON.stringify(headers ?? null), typeof body === "string" ? body : JSON.stringify(body ?? null)].join(" ");
  let connection = cache ? connections.get(key) : undefined;
  if (!connection) {
    connection = new Connection(href, options, key);
    if (cache) connections.set(key, connection);
  } else {
    // Later sources add their callbacks to the shared connection.
    const first = connection.options;
    const chain = (a, b) => (a && b ? (...args) => (a(...args), b(...args)) : a || b);
    connection.options = {
      ...first,
      onOpen: chain(first.onOpen, options.onOpen),
      onError: chain(first.onError, options.onError),
    };
  }
  return new Source(connection, options);
}

/** The URL of a channel subscription under `prefix` (default "/streaming"). */
export function channelUrl(channels, prefix = "/streaming") {
  const list = Array.isArray(channels) ? channels : [channels];
  if (list.length === 1) return `${prefix}/events/${encodeURIComponent(list[0])}`;
  return `${prefix}/events?` + list.map((c) => "channel=" + encodeURIComponent(c)).join("&");
}
