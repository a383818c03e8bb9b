// Type declarations for flask-streaming.js (served at {prefix}/client.d.ts).

/** Svelte's readable store contract. */
export interface Readable<T> {
  subscribe(run: (value: T) => void, invalidate?: () => void): () => void;
}

export interface Backoff {
  /** Retries per request after the first attempt (default 5). */
  retries?: number;
  /** First delay in ms (default 250); doubled (factor) per retry, jittered. */
  initial?: number;
  factor?: number;
  /** Largest delay in ms (default 10000). */
  max?: number;
}

/** The JSON error body of a flask_streaming server, with the HTTP status. */
export class StreamingError extends Error {
  readonly status: number;
  /** `{"error": code, "message": ..., ...details}` or null. */
  readonly body: any;
  /** The machine code (`body.error`), e.g. "missing_segments". */
  readonly code: string | null;
  readonly response: Response | null;
}

export interface SessionStatus {
  streamId: string;
  state: "open" | "completed" | string;
  protocol: string;
  filename: string | null;
  contentType: string | null;
  length: number | null;
  metadata: Record<string, unknown>;
  bytes: number;
  received: number;
  /** Segments 0..contiguous-1 are all stored. */
  contiguous: number;
  maxSegment: number;
  segments: number | null;
  createdAt: number;
  updatedAt: number;
  expiresAt: number;
  url?: string;
}

export interface UploadProgress {
  streamId: string;
  loaded: number;
  total: number;
  /** The next segment to send. */
  segment: number;
  count: number;
  /** The server's answer to the last segment (partial hooks' results). */
  response: Record<string, any> | null;
  done?: boolean;
}

export interface UploadOptions {
  /** Bytes per segment (default 8 MiB). */
  segmentSize?: number;
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
  filename?: string;
  contentType?: string;
  metadata?: Record<string, unknown>;
  /** Resume this session instead of opening a new one. */
  streamId?: string;
  /** Send `X-Stream-Checksum: sha256=...` (secure contexts only; default true). */
  checksum?: boolean;
}

export class StreamingClient {
  /**
   * @param url the uploads endpoint, e.g. "/streaming/uploads".
   * @param init fetch options added to every request.
   * @param backoff retry policy (network errors, 5xx, 408, 429; never other 4xx).
   */
  constructor(url?: string, init?: RequestInit, backoff?: Backoff);
  readonly url: string;
  getStarted(options?: { signal?: AbortSignal }): Promise<string>;
  create(
    info?: { filename?: string; contentType?: string; size?: number; metadata?: Record<string, unknown> },
    options?: { signal?: AbortSignal },
  ): Promise<SessionStatus>;
  status(id: string, options?: { signal?: AbortSignal }): Promise<SessionStatus>;
  abort(id: string, options?: { signal?: AbortSignal }): Promise<{ streamId: string; state: string }>;
  sendSegment(
    id: string,
    index: number,
    chunk: Blob | BufferSource | string | null,
    options?: { done?: boolean; signal?: AbortSignal; checksum?: boolean },
  ): Promise<Response>;
  /** svelte-stream's send: each chunk is a segment; resolves to the final Response. */
  send(
    id: string,
    readable: ReadableStream<Blob | BufferSource | string>,
    callback?: (response: Response) => unknown,
    options?: { signal?: AbortSignal },
  ): Promise<Response>;
  /** Upload in segments, resuming after network failures; resolves to the final JSON. */
  upload(blob: Blob, options?: UploadOptions): Promise<Record<string, any>>;
}

export interface StreamEvent {
  type: string;
  data: string;
  lastEventId: string;
  id: string;
  /** The flask_streaming channel this event was published on (or null). */
  channel: string | null;
}

export interface Store<T> extends Readable<T> {
  /** A store of `fn(value, previous)` for each event. */
  transform<U>(fn: (value: T, previous: U) => U, initial?: U): Store<U>;
  /** A store of JSON-parsed data; `or` gives the value when parsing fails. */
  json<U = any>(or?: (failure: { error: unknown; raw: string; previous: U | null }) => U | null): Store<U | null>;
}

export interface CloseInfo {
  /** Open the connection again. */
  connect(): void;
  /** true when close() was called on this side. */
  local: boolean;
  error: unknown;
  status?: number;
  lastEventId: string;
}

export interface SourceOptions {
  method?: string;
  headers?: HeadersInit;
  /** A string, Blob, FormData, URLSearchParams, or anything else (sent as JSON). */
  body?: unknown;
  withCredentials?: boolean;
  /** Reconnect after the stream ends or fails (default true), waiting the server's `retry`. */
  reconnect?: boolean;
  /** Initial reconnection time in ms (default 3000). */
  retry?: number;
  /** Resume after this event id. */
  lastEventId?: string;
  /** Share one connection among sources with the same request (default true). */
  cache?: boolean;
  onOpen?: (response: Response) => void;
  onError?: (error: unknown) => void;
  /** Called when the stream closes instead of reconnecting; `connect()` reopens it. */
  close?: (info: CloseInfo) => void;
  /**
   * Reconnect after 408, 425, 429, 500, 502, 503 or 504 (default true): a
   * documented deviation from EventSource, which fails the connection on any
   * status but 200. False: fail there too, exactly as EventSource.
   */
  retryOnStatus?: boolean;
}

export class Source implements Readable<StreamEvent | null> {
  select(type?: string): Store<string>;
  events(type?: string): Store<StreamEvent | null>;
  subscribe(run: (value: StreamEvent | null) => void, invalidate?: () => void): () => void;
  on(type: string, listener: (event: StreamEvent) => void): () => void;
  close(): void;
  connect(): void;
  /** 0 connecting, 1 open, 2 closed (as EventSource). */
  readonly readyState: 0 | 1 | 2;
  readonly lastEventId: string;
  readonly url: string;
}

export function source(url: string | URL, options?: SourceOptions): Source;

/** The URL of a channel subscription: "/streaming/events/a" or "...?channel=a&channel=b". */
export function channelUrl(channels: string | string[], prefix?: string): string;

export class EventStreamParser {
  constructor(handlers?: {
    onEvent?: (event: StreamEvent) => void;
    onRetry?: (ms: number) => void;
    onComment?: (text: string) => void;
    /** Called at every blank line with the last event ID string. */
    onLastEventId?: (id: string) => void;
    /** The last event ID string to start from (the id buffer starts with it too). */
    lastEventId?: string;
  });
  /** The last event ID string: what a reconnecting client resends. */
  lastEventId: string;
  /** The last event ID buffer, set by `id:` lines. */
  idBuffer: string;
  feed(chunk: Uint8Array | string): void;
  end(): void;
  reset(): void;
}

/** The UTF-8 bytes of `text` as a header value (a ByteString), as Last-Event-ID is sent. */
export function utf8HeaderValue(text: string): string;

/** Whether a Content-Type value's MIME type is text/event-stream (parameters ignored, any case). */
export function isEventStream(contentType: string | null): boolean;
