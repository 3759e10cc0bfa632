// rcapture's web viewer: one page, no dependencies, no build step.
//
// It reads the server's WebSocket stream (one protobuf `LogEntry` per
// binary frame, WIRE.md §1 and §3), keeps the last HISTORY events (and at
// most HISTORY_BYTES of payload), and draws only the rows in sight, once
// per animation frame. Module and pid filters go to the server in a
// subscribe message (and hide the events already held); the text filter
// runs here. With --auth-token the page asks for the token and sends it
// as ?token= on the stream and as a bearer token to the API.
'use strict';

(() => {
  const HISTORY = 10000;
  const HISTORY_BYTES = 64 * 1024 * 1024;
  /** Bytes of payload shown as text and as hex in the detail pane. */
  const SHOW_BYTES = 256 * 1024;
  const PREVIEW_BYTES = 160;
  const OVERSCAN = 8;
  const TOKEN_KEY = 'rcapture-token';

  const $ = (id) => document.getElementById(id);
  const utf8 = new TextDecoder('utf-8');
  const utf8Strict = new TextDecoder('utf-8', { fatal: true });
  const EMPTY = new Uint8Array(0);

  // ---------------------------------------------------------------- protobuf

  class Truncated extends Error {}

  /** A cursor over one message's bytes. */
  class Reader {
    constructor(buf) {
      this.buf = buf;
      this.pos = 0;
    }
    byte() {
      if (this.pos >= this.buf.length) throw new Truncated('message ends inside a field');
      return this.buf[this.pos++];
    }
    /** A varint as a Number (exact up to 2^53). */
    varint() {
      let b = this.byte();
      if (b < 0x80) return b;
      let x = b & 0x7f;
      let m = 128;
      for (let i = 1; i < 10; i++) {
        b = this.byte();
        x += (b & 0x7f) * m;
        if (b < 0x80) return x;
        m *= 128;
      }
      throw new Truncated('varint longer than 10 bytes');
    }
    /** A varint as a signed 64-bit BigInt (int64 fields). */
    int64() {
      let lo = 0;
      let hi = 0;
      let b;
      for (let s = 0; s < 28; s += 7) {
        b = this.byte();
        lo |= (b & 0x7f) << s;
        if (b < 0x80) return BigInt(lo >>> 0);
      }
      b = this.byte();
      lo |= (b & 0x0f) << 28;
      hi = (b & 0x7f) >> 4;
      if (b >= 0x80) {
        for (let s = 3; ; s += 7) {
          if (s > 31) throw new Truncated('varint longer than 10 bytes');
          b = this.byte();
          hi |= (b & 0x7f) << s;
          if (b < 0x80) break;
        }
      }
      return BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
    }
    bytes() {
      const n = this.varint();
      if (this.pos + n > this.buf.length) throw new Truncated('field longer than its message');
      const v = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      return v;
    }
    string() {
      const b = this.bytes();
      // Short ASCII text (names, addresses) without a decoder call.
      if (b.length <= 64) {
        let s = '';
        for (let i = 0; i < b.length; i++) {
          if (b[i] >= 0x80) return utf8.decode(b);
          s += String.fromCharCode(b[i]);
        }
        return s;
      }
      return utf8.decode(b);
    }
    skip(wire) {
      switch (wire) {
        case 0: this.varint(); break;
        case 1: this.pos += 8; break;
        case 2: this.bytes(); break;
        case 5: this.pos += 4; break;
        default: throw new Truncated(`wire type ${wire} is not supported`);
      }
      if (this.pos > this.buf.length) throw new Truncated('message ends inside a field');
    }
    /** The next key as [field, wire type]. */
    key() {
      const k = this.varint();
      return [Math.floor(k / 8), k % 8];
    }
  }

  /** `Event` (WIRE.md §1; field numbers frozen, 12..16 are rcapture's). */
  function decodeEvent(buf) {
    const r = new Reader(buf);
    const e = {
      ts: 0n, uuid: '', src: '', sport: 0, dst: '', dport: 0, pid: 0, comm: '', type: 0,
      length: 0, payload: EMPTY, tid: 0, uid: 0, module: '', fd: 0, truncated: 0,
    };
    while (r.pos < buf.length) {
      const [f, w] = r.key();
      const want = f === 2 || f === 3 || f === 5 || f === 8 || f === 11 || f === 14 ? 2 : 0;
      if (f < 1 || f > 16 || w !== want) {
        r.skip(w);
        continue;
      }
      switch (f) {
        case 1: e.ts = r.int64(); break;
        case 2: e.uuid = r.string(); break;
        case 3: e.src = r.string(); break;
        case 4: e.sport = r.varint(); break;
        case 5: e.dst = r.string(); break;
        case 6: e.dport = r.varint(); break;
        case 7: e.pid = Number(r.int64()); break;
        case 8: e.comm = r.string(); break;
        case 9: e.type = r.varint(); break;
        case 10: e.length = r.varint(); break;
        case 11: e.payload = r.bytes(); break;
        case 12: e.tid = r.varint(); break;
        case 13: e.uid = r.varint(); break;
        case 14: e.module = r.string(); break;
        case 15: e.fd = r.varint(); break;
        case 16: e.truncated = r.varint(); break;
      }
    }
    return e;
  }

  function decodeHeartbeat(buf) {
    const r = new Reader(buf);
    const h = { timestamp: 0n, count: 0, message: '' };
    while (r.pos < buf.length) {
      const [f, w] = r.key();
      if (f === 1 && w === 0) h.timestamp = r.int64();
      else if (f === 2 && w === 0) h.count = Number(r.int64());
      else if (f === 3 && w === 2) h.message = r.string();
      else r.skip(w);
    }
    return h;
  }

  /** `LogEntry`: { type, seq, event (its encoded bytes) | heartbeat | log }. */
  function decodeEntry(buf) {
    const r = new Reader(buf);
    const out = { type: 0, seq: 0, event: null, heartbeat: null, log: null };
    while (r.pos < buf.length) {
      const [f, w] = r.key();
      if (f === 1 && w === 0) out.type = r.varint();
      else if (f === 2 && w === 2) out.event = r.bytes();
      else if (f === 3 && w === 2) out.heartbeat = decodeHeartbeat(r.bytes());
      else if (f === 4 && w === 2) out.log = r.string();
      else if (f === 5 && w === 0) out.seq = r.varint();
      else r.skip(w);
    }
    return out;
  }

  // ------------------------------------------------------------ event model

  const HEX64 = /^[0-9A-F]{64}$/;
  const TUPLE = /^\[?[0-9a-fA-F.:]+\]?:\d+-\[?[0-9a-fA-F.:]+\]?:\d+$/;

  /** The event kind (filter `types`): the wire has no field for it, the
   * module and the uuid shape of WIRE.md §2 tell it. */
  function kindOf(e) {
    switch (e.module) {
      case 'bash': return 'bash';
      case 'mysqld':
      case 'postgres': return 'query';
      case 'gnutls':
      case 'nss': return 'data';
      case 'gotls': return HEX64.test(e.uuid) ? 'masterkey' : 'data';
      default:
        if (e.uuid.startsWith('sock:')) return 'data';
        if (HEX64.test(e.uuid)) return 'masterkey';
        // Connections: PID_TID_Comm_FD, no payload or the tuple text;
        // packets: PID_Ifindex_Comm with the raw frame.
        if (e.payload.length === 0 || TUPLE.test(latin1(e.payload, 120))) return 'conn';
        return 'packet';
    }
  }

  /** The meaning of `type` for the event's kind (WIRE.md §2). */
  function typeText(e) {
    switch (e.kind) {
      case 'data': return e.type === 1 ? 'send' : e.type === 0 ? 'recv' : String(e.type);
      case 'masterkey':
        return e.type === 0x0304 ? 'TLS 1.3' : e.type === 0x0303 ? 'TLS 1.2'
          : e.type ? `0x${e.type.toString(16)}` : '';
      case 'bash': return ['readline', 'retval', 'exit/exec'][e.type] ?? String(e.type);
      case 'query': return e.module === 'mysqld' ? `ret ${e.type | 0}` : '';
      default: return '';
    }
  }

  function endpoint(ip, port) {
    return `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
  }

  function tupleText(e) {
    if (e.kind === 'packet') return packetInfo(e.payload).tuple;
    const none = (ip) => ip === '' || ip === '127.0.0.1' || ip === '0.0.0.0';
    if (e.sport === 0 && e.dport === 0 && none(e.src) && none(e.dst)) return '';
    return `${endpoint(e.src, e.sport)} → ${endpoint(e.dst, e.dport)}`;
  }

  function latin1(bytes, max) {
    const n = Math.min(bytes.length, max ?? bytes.length);
    let s = '';
    for (let i = 0; i < n; i += 0x4000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, Math.min(n, i + 0x4000)));
    }
    return s;
  }

  /** One line for the table: control characters as ↵ and ·. */
  function previewOf(e) {
    if (e.pv !== undefined) return e.pv;
    let s;
    if (e.kind === 'packet') s = packetInfo(e.payload).summary;
    else if (e.kind === 'conn' && e.payload.length === 0) s = e.fd ? `fd ${e.fd}` : '';
    else {
      s = utf8.decode(e.payload.subarray(0, PREVIEW_BYTES))
        .replace(/\r?\n/g, '↵ ')
        .replace(/[\x00-\x08\x0b-\x1f\x7f\ufffd]/g, '·')
        .replace(/\t/g, ' ');
    }
    e.pv = s;
    return s;
  }

  /** The lower-case text the search looks at besides the payload. */
  function fieldsOf(e) {
    if (e.hay === undefined) {
      e.hay = `${e.pid} ${e.comm} ${e.module} ${e.kind} ${e.dir} ${e.tuple} ${e.uuid}`.toLowerCase();
    }
    return e.hay;
  }

  function bytesIncludesFolded(hay, needle) {
    const n = needle.length;
    if (n === 0) return true;
    const first = needle[0];
    const last = hay.length - n;
    outer: for (let i = 0; i <= last; i++) {
      let b = hay[i];
      if (b >= 65 && b <= 90) b |= 32;
      if (b !== first) continue;
      for (let j = 1; j < n; j++) {
        let c = hay[i + j];
        if (c >= 65 && c <= 90) c |= 32;
        if (c !== needle[j]) continue outer;
      }
      return true;
    }
    return false;
  }

  // ----------------------------------------------------------------- packets

  function ipv4(b, o) {
    return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
  }

  function ipv6(b, o) {
    const parts = [];
    for (let i = 0; i < 16; i += 2) parts.push(((b[o + i] << 8) | b[o + i + 1]).toString(16));
    // The longest run of zero groups becomes "::".
    let best = -1;
    let bestLen = 1;
    for (let i = 0; i < 8; i++) {
      let j = i;
      while (j < 8 && parts[j] === '0') j++;
      if (j - i > bestLen) {
        best = i;
        bestLen = j - i;
      }
    }
    if (best < 0) return parts.join(':');
    return `${parts.slice(0, best).join(':')}::${parts.slice(best + bestLen).join(':')}`;
  }

  const TCP_FLAGS = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG'];

  /** Ethernet / IPv4 / IPv6 / TCP / UDP headers of a frame: a summary,
   * the tuple and the byte offset of the transport payload. */
  function packetInfo(b) {
    const info = { summary: `${b.length} bytes`, tuple: '', lines: [], dataAt: -1 };
    if (b.length < 14) return info;
    let type = (b[12] << 8) | b[13];
    let o = 14;
    const mac = (at) => Array.from(b.subarray(at, at + 6), (x) => x.toString(16).padStart(2, '0')).join(':');
    info.lines.push(['ethernet', `${mac(6)} → ${mac(0)} type 0x${type.toString(16).padStart(4, '0')}`]);
    while ((type === 0x8100 || type === 0x88a8) && b.length >= o + 4) {
      info.lines.push(['vlan', String(((b[o] << 8) | b[o + 1]) & 0x0fff)]);
      type = (b[o + 2] << 8) | b[o + 3];
      o += 4;
    }
    let proto;
    let src;
    let dst;
    let family;
    if (type === 0x0800 && b.length >= o + 20) {
      const ihl = (b[o] & 0x0f) * 4;
      proto = b[o + 9];
      src = ipv4(b, o + 12);
      dst = ipv4(b, o + 16);
      family = 'IPv4';
      info.lines.push(['ipv4', `${src} → ${dst} ttl ${b[o + 8]} proto ${proto} length ${(b[o + 2] << 8) | b[o + 3]}`]);
      o += ihl;
    } else if (type === 0x86dd && b.length >= o + 40) {
      proto = b[o + 6];
      src = ipv6(b, o + 8);
      dst = ipv6(b, o + 24);
      family = 'IPv6';
      info.lines.push(['ipv6', `${src} → ${dst} hop limit ${b[o + 7]} next header ${proto}`]);
      o += 40;
    } else {
      info.summary = `ethertype 0x${type.toString(16).padStart(4, '0')}, ${b.length} bytes`;
      return info;
    }
    const ports = b.length >= o + 4 ? [(b[o] << 8) | b[o + 1], (b[o + 2] << 8) | b[o + 3]] : null;
    let name = `proto ${proto}`;
    let extra = '';
    if (proto === 6 && ports && b.length >= o + 20) {
      name = 'TCP';
      const flags = TCP_FLAGS.filter((_, i) => b[o + 13] & (1 << i));
      const hdr = (b[o + 12] >> 4) * 4;
      const seq = ((b[o + 4] << 24) | (b[o + 5] << 16) | (b[o + 6] << 8) | b[o + 7]) >>> 0;
      extra = ` [${flags.join(' ')}] seq ${seq}`;
      info.dataAt = o + hdr;
      info.lines.push(['tcp', `${ports[0]} → ${ports[1]}${extra}`]);
    } else if (proto === 17 && ports && b.length >= o + 8) {
      name = 'UDP';
      info.dataAt = o + 8;
      info.lines.push(['udp', `${ports[0]} → ${ports[1]}`]);
    } else if (proto === 1 || proto === 58) {
      name = proto === 1 ? 'ICMP' : 'ICMPv6';
    }
    if (ports && (proto === 6 || proto === 17)) {
      info.tuple = `${endpoint(src, ports[0])} → ${endpoint(dst, ports[1])}`;
    } else {
      info.tuple = `${src} → ${dst}`;
    }
    const data = info.dataAt >= 0 ? Math.max(0, b.length - info.dataAt) : 0;
    info.summary = `${family} ${name}${extra}${data ? `, ${data} bytes of data` : ''}`;
    if (data) {
      const head = utf8.decode(b.subarray(info.dataAt, info.dataAt + PREVIEW_BYTES))
        .replace(/\r?\n/g, '↵ ').replace(/[\x00-\x1f\x7f\ufffd]/g, '·');
      info.summary += `: ${head}`;
    }
    return info;
  }

  // ------------------------------------------------------------------- state

  const state = {
    paused: false,
    missedPaused: 0,
    received: 0,
    gaps: 0,
    undecodable: 0,
    lastSeq: 0,
    follow: true,
    token: '',
    ws: null,
    backoff: 500,
    reconnectTimer: 0,
    lastMessage: 0,
    lastHeartbeat: 0,
    heartbeatEvery: 0,
    askingToken: false,
    lastStatus: null,
    lastStatusAt: 0,
    lastReceived: 0,
  };

  /** The page's filter: module and pids (also sent to the server), text. */
  const filter = { module: '', pids: new Set(), packets: false, text: '', needle: EMPTY };

  function passes(e) {
    if (filter.module && e.module !== filter.module) return false;
    if (filter.pids.size && !filter.pids.has(e.pid)) return false;
    if (!filter.text) return true;
    return fieldsOf(e).includes(filter.text) || bytesIncludesFolded(e.payload, filter.needle);
  }

  /** The last HISTORY events, by id (ids grow by one per event kept). */
  const store = {
    ring: new Array(HISTORY),
    first: 0,
    next: 0,
    bytes: 0,
    evicted: 0,
    has(id) {
      return id >= this.first && id < this.next;
    },
    /** The decoded event of `id` (decoded when first needed). */
    get(id) {
      return decoded(this.ring[id % HISTORY]);
    },
    /** Keeps an entry: { raw (the encoded Event), seq }. */
    push(w) {
      while (this.next > this.first
        && (this.next - this.first >= HISTORY || this.bytes + w.raw.length > HISTORY_BYTES)) {
        this.evictOldest();
      }
      w.id = this.next++;
      this.ring[w.id % HISTORY] = w;
      this.bytes += w.raw.length;
    },
    evictOldest() {
      const id = this.first;
      const w = this.ring[id % HISTORY];
      this.ring[id % HISTORY] = undefined;
      this.bytes -= w.raw.length;
      this.first++;
      this.evicted++;
      selection.delete(id);
      view.dropped(id);
    },
    clear() {
      this.ring = new Array(HISTORY);
      this.first = this.next;
      this.bytes = 0;
    },
  };

  /** The rows shown: every event held, or those passing the filter. */
  const view = {
    filtered: false,
    ids: [],
    head: 0,
    /** Rows removed from the top since the last frame (keeps a scrolled view still). */
    shifted: 0,
    length() {
      return this.filtered ? this.ids.length - this.head : store.next - store.first;
    },
    at(i) {
      return this.filtered ? this.ids[this.head + i] : store.first + i;
    },
    indexOf(id) {
      if (!this.filtered) return store.has(id) ? id - store.first : -1;
      let lo = this.head;
      let hi = this.ids.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (this.ids[mid] === id) return mid - this.head;
        if (this.ids[mid] < id) lo = mid + 1;
        else hi = mid - 1;
      }
      return -1;
    },
    added(w) {
      if (this.filtered && passes(decoded(w))) this.ids.push(w.id);
    },
    dropped(id) {
      if (!this.filtered) {
        this.shifted++;
        return;
      }
      if (this.head < this.ids.length && this.ids[this.head] === id) {
        this.head++;
        this.shifted++;
        if (this.head > 4096 && this.head * 2 > this.ids.length) {
          this.ids = this.ids.slice(this.head);
          this.head = 0;
        }
      }
    },
    rebuild() {
      this.filtered = Boolean(filter.module || filter.pids.size || filter.text);
      this.ids = [];
      this.head = 0;
      this.shifted = 0;
      if (!this.filtered) return;
      for (let id = store.first; id < store.next; id++) {
        if (passes(store.get(id))) this.ids.push(id);
      }
    },
  };

  const selection = new Set();
  let anchor = -1;

  // ------------------------------------------------------------ the stream

  function onEntry(buf) {
    state.lastMessage = performance.now();
    let entry;
    try {
      entry = decodeEntry(buf);
    } catch (err) {
      state.undecodable++;
      return;
    }
    if (entry.heartbeat) {
      const now = performance.now();
      if (state.lastHeartbeat && entry.heartbeat.count > 0) state.heartbeatEvery = now - state.lastHeartbeat;
      state.lastHeartbeat = now;
      return;
    }
    if (entry.log !== null) {
      message(`server: ${entry.log}`);
      return;
    }
    const raw = entry.event;
    if (!raw) return;
    state.received++;
    if (entry.seq) {
      if (state.lastSeq && entry.seq > state.lastSeq + 1) state.gaps += entry.seq - state.lastSeq - 1;
      state.lastSeq = entry.seq;
    }
    if (state.paused) {
      state.missedPaused++;
      if (!statsTimer) statsTimer = setTimeout(() => { statsTimer = 0; updateRows(); }, 250);
      return;
    }
    // Decoded when drawn, searched or exported: at the full rate most
    // events are never drawn.
    const w = { id: 0, seq: entry.seq, raw, d: null };
    store.push(w);
    view.added(w);
    schedule();
  }

  /** The event of a kept entry, decoded once. */
  function decoded(w) {
    if (w.d) return w.d;
    let e;
    let bad = false;
    try {
      e = decodeEvent(w.raw);
    } catch (err) {
      state.undecodable++;
      bad = true;
      e = decodeEvent(EMPTY);
      e.payload = w.raw;
      e.length = w.raw.length;
    }
    e.id = w.id;
    e.seq = w.seq;
    e.kind = bad ? 'undecodable' : kindOf(e);
    e.dir = typeText(e);
    e.tuple = tupleText(e);
    w.d = e;
    return e;
  }

  function onControl(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    if (m.op === 'subscribed') {
      $('f-server').textContent = `server filter: ${describeFilter(m.filter)}`;
      message('');
    } else if (m.op === 'error') {
      message(`server refused the filter: ${m.message}`, true);
    }
  }

  function describeFilter(f) {
    const parts = [];
    for (const k of ['modules', 'pids', 'uids', 'types']) {
      if (f && f[k] && f[k].length) parts.push(`${k}=${f[k].join(',')}`);
    }
    if (f && f.max_rate) parts.push(`max_rate=${f.max_rate}`);
    return parts.length ? parts.join(' ') : 'everything';
  }

  function subscribe() {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const f = { modules: filter.module ? [filter.module] : [], pids: [...filter.pids] };
    // The server sends packet events only to a client whose types name them.
    if (filter.packets) f.types = ['data', 'masterkey', 'conn', 'packet', 'bash', 'query'];
    ws.send(JSON.stringify({ op: 'subscribe', filter: f }));
  }

  function setConn(cls, text) {
    const c = $('conn');
    c.className = `conn ${cls}`;
    $('conn-text').textContent = text;
    c.dataset.state = cls;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    const url = new URL('/ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (state.token) url.searchParams.set('token', state.token);
    setConn('connecting', 'connecting');
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    state.ws = ws;
    ws.onopen = () => {
      state.backoff = 500;
      state.lastSeq = 0;
      state.lastHeartbeat = 0;
      state.lastMessage = performance.now();
      setConn('live', 'live');
      subscribe();
    };
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') onControl(m.data);
      else onEntry(new Uint8Array(m.data));
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      const why = ev.code === 1008 && ev.reason ? ` (${ev.reason})` : '';
      reconnectLater(`disconnected${why}`);
    };
  }

  function reconnectLater(why) {
    const delay = state.backoff;
    state.backoff = Math.min(state.backoff * 2, 5000);
    setConn('down', `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(async () => {
      if (await checkAccess()) connect();
      else if (!state.askingToken) reconnectLater('not connected');
    }, delay);
  }

  /** A stream that stopped talking (no heartbeat for 2.5 periods) is closed and reopened. */
  function watchdog() {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !state.heartbeatEvery) return;
    if (performance.now() - state.lastMessage > 2.5 * state.heartbeatEvery + 5000) ws.close();
  }

  // ------------------------------------------------------- API, auth, status

  function api(path) {
    const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
    return fetch(path, { headers, cache: 'no-store' });
  }

  /** GET /status: true when the server lets this page in. Asks for the
   * token on a 401. */
  async function checkAccess() {
    let r;
    try {
      r = await api('/status');
    } catch (err) {
      message('the server does not answer', true);
      return false;
    }
    if (r.status === 401) {
      askToken(state.token ? 'invalid token' : '');
      return false;
    }
    let body = null;
    try {
      body = await r.json();
    } catch {
      body = null;
    }
    if (!r.ok) {
      message(`GET /status: ${r.status} ${body && body.msg ? body.msg : ''}`, true);
      return false;
    }
    if (body) showStatus(body.data);
    return true;
  }

  function askToken(error) {
    state.askingToken = true;
    const ws = state.ws;
    state.ws = null;
    if (ws) ws.close();
    setConn('down', 'token needed');
    $('auth-error').textContent = error;
    const d = $('auth');
    if (!d.open) d.showModal();
    $('auth-token').focus();
  }

  async function pollStatus() {
    if (state.askingToken) return;
    let r;
    try {
      r = await api('/status');
    } catch {
      return;
    }
    if (r.status === 401) {
      askToken(state.token ? 'invalid token' : '');
      return;
    }
    if (!r.ok) return;
    try {
      showStatus((await r.json()).data);
    } catch {
      // A body that is not the envelope: nothing to show.
    }
  }

  const fmt = (n) => (n === undefined || n === null ? '–' : Number(n).toLocaleString('en-US'));

  function showStatus(data) {
    if (!data || !data.counters) return;
    const c = data.counters;
    const now = performance.now();
    const prev = state.lastStatus;
    const dt = (now - state.lastStatusAt) / 1000;
    let rate = '–';
    let pageRate = '–';
    if (prev && dt > 0.2) {
      rate = fmt(Math.max(0, Math.round((c.captured - prev.captured) / dt)));
      pageRate = fmt(Math.round((state.received - state.lastReceived) / dt));
    }
    state.lastStatus = c;
    state.lastStatusAt = now;
    state.lastReceived = state.received;
    const s = $('s-rate');
    s.replaceChildren(
      'captured ', b(fmt(c.captured)), ` (${rate}/s) · this page `, b(fmt(state.received)),
      ` (${pageRate}/s)`,
    );
    const drops = [
      ['kernel', c.lost_kernel],
      ['output', c.output_dropped],
      ['server queue', c.server_queue_dropped],
      ['websocket', c.ws_dropped],
      ['forward', c.forward ? c.forward.dropped_events : undefined],
      ['event file', c.event_file ? c.event_file.dropped_events : undefined],
    ].filter(([, v]) => v !== undefined);
    const d = $('s-drops');
    const parts = ['dropped: '];
    drops.forEach(([name, v], i) => {
      if (i) parts.push(' · ');
      parts.push(`${name} `, b(fmt(v), v > 0));
    });
    parts.push(' · this page: gaps ', b(fmt(state.gaps), state.gaps > 0));
    parts.push(` · truncated events ${fmt(c.truncated_events)}`);
    d.replaceChildren(...parts);
    d.dataset.kernel = c.lost_kernel;
    const mods = (data.modules || []).map((m) => `${m.name}${m.attached ? '' : ' (not attached)'}`);
    $('foot').dataset.version = data.version || '';
    $('f-server').title = `rcapture ${data.version || ''} · modules: ${mods.join(', ') || 'none'}`;
    updateRows();
  }

  function b(text, lost) {
    const el = document.createElement('b');
    el.textContent = text;
    if (lost) el.className = 'lost';
    return el;
  }

  let rowsKey = '';

  function updateRows() {
    const el = $('s-rows');
    const held = store.next - store.first;
    const key = `${view.length()} ${held} ${store.evicted} ${state.paused} ${state.missedPaused} ${state.undecodable} ${state.received}`;
    if (key === rowsKey) return;
    rowsKey = key;
    let t = `rows ${fmt(view.length())} of ${fmt(held)} held (at most ${fmt(HISTORY)}) · removed from history ${fmt(store.evicted)}`;
    if (state.paused || state.missedPaused) t += ` · not kept while paused ${fmt(state.missedPaused)}`;
    if (state.undecodable) t += ` · undecodable ${fmt(state.undecodable)}`;
    el.textContent = t;
    el.dataset.rows = view.length();
    el.dataset.held = held;
    el.dataset.received = state.received;
    el.dataset.missed = state.missedPaused;
    el.dataset.evicted = store.evicted;
  }

  function message(text, error) {
    const m = $('message');
    m.textContent = text;
    m.className = error ? 'error' : '';
  }

  // -------------------------------------------------------------- rendering

  let rowHeight = 22;
  let dirty = false;
  const pool = [];
  let lastStatsFrame = 0;
  let statsTimer = 0;

  function schedule() {
    if (!dirty) {
      dirty = true;
      requestAnimationFrame(render);
    }
  }

  function makeRow() {
    const row = document.createElement('div');
    row.className = 'row';
    for (let i = 0; i < 9; i++) row.append(document.createElement('span'));
    row.children[7].className = 'num';
    row.children[8].className = 'pv';
    row.rid = -1;
    return row;
  }

  function pad(n, w) {
    return String(n).padStart(w, '0');
  }

  function timeOf(e) {
    const sec = Number(e.ts / 1000000000n);
    const ns = Number(e.ts % 1000000000n);
    const d = new Date(sec * 1000);
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(Math.floor(ns / 1000), 6)}`;
  }

  function isoOf(e) {
    const sec = Number(e.ts / 1000000000n);
    const ns = Number(e.ts % 1000000000n);
    return `${new Date(sec * 1000).toISOString().slice(0, 19)}.${pad(ns, 9)}Z`;
  }

  function fill(row, e) {
    row.rid = e.id;
    const c = row.children;
    c[0].textContent = timeOf(e);
    c[1].textContent = e.pid;
    c[2].textContent = e.comm;
    c[3].textContent = e.module;
    c[4].textContent = e.kind;
    c[4].className = `k-${e.kind}`;
    c[5].textContent = e.dir;
    c[6].textContent = e.tuple;
    c[6].title = e.tuple;
    c[7].textContent = e.length + (e.truncated ? '+' : '');
    c[8].textContent = previewOf(e);
  }

  function render() {
    dirty = false;
    const sc = $('scroller');
    const rows = $('rows');
    const n = view.length();
    $('spacer').style.height = `${n * rowHeight}px`;
    if (state.follow) {
      sc.scrollTop = n * rowHeight;
    } else if (view.shifted) {
      sc.scrollTop = Math.max(0, sc.scrollTop - view.shifted * rowHeight);
    }
    view.shifted = 0;
    const top = sc.scrollTop;
    const start = Math.max(0, Math.floor(top / rowHeight) - OVERSCAN);
    const count = Math.max(0, Math.min(n - start, Math.ceil(sc.clientHeight / rowHeight) + 2 * OVERSCAN));
    while (pool.length < count) {
      const r = makeRow();
      pool.push(r);
      rows.append(r);
    }
    rows.style.transform = `translateY(${start * rowHeight}px)`;
    for (let k = 0; k < pool.length; k++) {
      const row = pool[k];
      if (k >= count) {
        if (!row.hidden) {
          row.hidden = true;
          row.rid = -1;
        }
        continue;
      }
      const id = view.at(start + k);
      if (row.rid !== id) fill(row, store.get(id));
      row.hidden = false;
      const sel = selection.has(id);
      if (row.classList.contains('sel') !== sel) row.classList.toggle('sel', sel);
    }
    const now = performance.now();
    if (now - lastStatsFrame > 250) {
      lastStatsFrame = now;
      updateRows();
    } else {
      // The last frame of a burst still shows the final counts.
      clearTimeout(statsTimer);
      statsTimer = setTimeout(() => { statsTimer = 0; updateRows(); }, 300);
    }
  }

  // ------------------------------------------------------------ the detail

  function el(tag, props, ...children) {
    const x = document.createElement(tag);
    if (props) Object.assign(x, props);
    for (const c of children) if (c !== null && c !== undefined) x.append(c);
    return x;
  }

  const hexDigits = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

  function hexDump(bytes) {
    const n = Math.min(bytes.length, SHOW_BYTES);
    const lines = [];
    for (let o = 0; o < n; o += 16) {
      let h = '';
      let a = '';
      for (let i = 0; i < 16; i++) {
        if (o + i < n) {
          const v = bytes[o + i];
          h += `${hexDigits[v]} `;
          a += v >= 0x20 && v < 0x7f ? String.fromCharCode(v) : '.';
        } else {
          h += '   ';
        }
        if (i === 7) h += ' ';
      }
      lines.push(`${o.toString(16).padStart(8, '0')}  ${h} |${a}|`);
    }
    return lines.join('\n');
  }

  /** Text as the text output shows it: UTF-8 when valid, newline and tab
   * as they are, other control bytes (and invalid UTF-8) as \xNN. */
  function textOf(bytes) {
    let s;
    try {
      s = utf8Strict.decode(bytes);
    } catch {
      let out = '';
      for (let i = 0; i < bytes.length; i++) {
        const v = bytes[i];
        out += (v >= 0x20 && v < 0x7f) || v === 10 || v === 9 || v === 13
          ? String.fromCharCode(v) : `\\x${hexDigits[v]}`;
      }
      return out.replace(/\r\n/g, '\n');
    }
    return s.replace(/\r\n/g, '\n')
      .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => `\\x${hexDigits[c.charCodeAt(0)]}`);
  }

  function cutNote(shownBytes, total) {
    return shownBytes < total
      ? el('p', { className: 'note', textContent: `first ${fmt(shownBytes)} of ${fmt(total)} bytes shown; export the event for all of it` })
      : null;
  }

  const HTTP_REQUEST = /^([A-Z][A-Z-]{1,19}) (\S+) (HTTP\/1\.[01])$/;
  const HTTP_RESPONSE = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/;

  /** An HTTP/1.x request or response at the start of a payload. */
  function parseHttp(p) {
    const n = Math.min(p.length, 65536);
    let end = -1;
    for (let i = 0; i + 3 < n; i++) {
      if (p[i] === 13 && p[i + 1] === 10 && p[i + 2] === 13 && p[i + 3] === 10) {
        end = i;
        break;
      }
    }
    const head = utf8.decode(p.subarray(0, end < 0 ? n : end));
    const lines = head.split('\r\n');
    const req = HTTP_REQUEST.exec(lines[0]);
    const res = HTTP_RESPONSE.exec(lines[0]);
    if (!req && !res) return null;
    const headers = lines.slice(1).filter((l) => l).map((l) => {
      const i = l.indexOf(':');
      return i > 0 ? [l.slice(0, i), l.slice(i + 1).trim()] : [l, ''];
    });
    const get = (name) => {
      const h = headers.find(([k]) => k.toLowerCase() === name);
      return h ? h[1] : '';
    };
    let body = end < 0 ? null : p.subarray(end + 4);
    let rest = EMPTY;
    const notes = [];
    if (end < 0) notes.push('the headers go on past the captured bytes');
    const len = get('content-length');
    if (body && /^\d+$/.test(len) && body.length > Number(len)) {
      rest = body.subarray(Number(len));
      body = body.subarray(0, Number(len));
    }
    if (body && /chunked/i.test(get('transfer-encoding'))) {
      const d = dechunk(body);
      body = d.body;
      rest = d.rest;
      notes.push(d.complete ? 'chunked body, decoded' : 'chunked body, decoded as far as captured');
    }
    return {
      start: lines[0], request: Boolean(req), headers, body, rest, notes,
      encoding: get('content-encoding').toLowerCase(), type: get('content-type').toLowerCase(),
    };
  }

  function dechunk(b) {
    const parts = [];
    let o = 0;
    let total = 0;
    for (;;) {
      let eol = -1;
      for (let i = o; i + 1 < b.length; i++) {
        if (b[i] === 13 && b[i + 1] === 10) {
          eol = i;
          break;
        }
      }
      if (eol < 0) break;
      const size = parseInt(latin1(b.subarray(o, eol)).split(';')[0], 16);
      if (!Number.isFinite(size)) break;
      o = eol + 2;
      if (size === 0) {
        const out = new Uint8Array(total);
        let at = 0;
        for (const p of parts) {
          out.set(p, at);
          at += p.length;
        }
        const trailerEnd = o + 2 <= b.length ? o + 2 : b.length;
        return { body: out, rest: b.subarray(trailerEnd), complete: true };
      }
      const chunk = b.subarray(o, Math.min(b.length, o + size));
      parts.push(chunk);
      total += chunk.length;
      o += size + 2;
      if (o > b.length) break;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return { body: out, rest: EMPTY, complete: false };
  }

  function bodyText(bytes, type) {
    const shownBytes = bytes.subarray(0, SHOW_BYTES);
    let text = textOf(shownBytes);
    if (type.includes('json') && shownBytes.length === bytes.length) {
      try {
        text = JSON.stringify(JSON.parse(utf8Strict.decode(bytes)), null, 2);
      } catch {
        // Not JSON after all: shown as it is.
      }
    }
    return text;
  }

  function httpSection(h) {
    const frag = [];
    frag.push(el('h3', { textContent: h.request ? 'HTTP request' : 'HTTP response' }));
    frag.push(el('div', { className: 'startline', textContent: h.start }));
    const t = el('table', { className: 'headers' });
    for (const [k, v] of h.headers) t.append(el('tr', null, el('td', { textContent: k }), el('td', { textContent: v })));
    frag.push(t);
    for (const n of h.notes) frag.push(el('p', { className: 'note', textContent: n }));
    if (h.body && h.body.length) {
      frag.push(el('h3', { textContent: `body (${fmt(h.body.length)} bytes)` }));
      const pre = el('pre', { className: 'body' });
      if (h.encoding === 'gzip' || h.encoding === 'deflate' || h.encoding === 'x-gzip') {
        pre.textContent = `${h.encoding}-encoded: decoding…`;
        inflate(h.body, h.encoding === 'deflate' ? 'deflate' : 'gzip').then(
          (plain) => {
            pre.textContent = bodyText(plain, h.type);
            pre.before(el('p', { className: 'note', textContent: `${h.encoding}-encoded, ${fmt(plain.length)} bytes decoded` }));
          },
          () => {
            pre.textContent = textOf(h.body.subarray(0, SHOW_BYTES));
            pre.before(el('p', { className: 'note', textContent: `${h.encoding}-encoded, not decodable as captured` }));
          },
        );
      } else {
        if (h.encoding) frag.push(el('p', { className: 'note', textContent: `${h.encoding}-encoded (not decoded here)` }));
        pre.textContent = bodyText(h.body, h.type);
      }
      frag.push(pre, cutNote(Math.min(h.body.length, SHOW_BYTES), h.body.length));
    }
    if (h.rest.length) {
      frag.push(el('p', { className: 'note', textContent: `${fmt(h.rest.length)} more bytes after this message (see the text below)` }));
    }
    return frag;
  }

  async function inflate(bytes, format) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream(format));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function fieldTable(e) {
    const rows = [
      ['time', isoOf(e)],
      ['module', e.module],
      ['kind', e.kind],
      ['type', `${e.type}${e.dir ? ` (${e.dir})` : ''}`],
      ['pid / tid / uid', `${e.pid} / ${e.tid} / ${e.uid}`],
      ['comm', e.comm],
      ['fd', String(e.fd)],
      ['source', endpoint(e.src, e.sport)],
      ['destination', endpoint(e.dst, e.dport)],
      ['length', `${e.length} bytes${e.truncated ? ` (+${e.truncated} not captured)` : ''}`],
      ['uuid', e.uuid],
      ['seq', String(e.seq)],
    ];
    const t = el('table');
    for (const [k, v] of rows) t.append(el('tr', null, el('td', { textContent: k }), el('td', { textContent: v })));
    return t;
  }

  function kindSection(e) {
    const p = e.payload;
    switch (e.kind) {
      case 'data': {
        const h = parseHttp(p);
        return h ? httpSection(h) : [];
      }
      case 'bash': {
        const what = e.type === 0 ? 'command' : e.type === 1 ? 'return value' : 'exit / exec';
        return [el('h3', { textContent: `bash ${what}` }), el('pre', { className: 'command', textContent: textOf(p.subarray(0, SHOW_BYTES)) })];
      }
      case 'query': {
        const title = e.module === 'mysqld' ? `SQL query (MySQL/MariaDB, dispatch_command returned ${e.type | 0})` : 'SQL query (PostgreSQL)';
        return [el('h3', { textContent: title }), el('pre', { className: 'sql', textContent: textOf(p.subarray(0, SHOW_BYTES)) })];
      }
      case 'masterkey':
        return [el('h3', { textContent: `key log (${e.dir || 'TLS'})` }), el('pre', { className: 'keylog', textContent: textOf(p) })];
      case 'packet': {
        const info = packetInfo(p);
        const t = el('table');
        for (const [k, v] of info.lines) t.append(el('tr', null, el('td', { textContent: k }), el('td', { textContent: v })));
        const out = [el('h3', { textContent: 'packet' }), t];
        if (info.dataAt >= 0 && info.dataAt < p.length) {
          const h = parseHttp(p.subarray(info.dataAt));
          if (h) out.push(...httpSection(h));
        }
        return out;
      }
      default:
        return [];
    }
  }

  function showDetail(e) {
    const d = $('detail');
    d.hidden = false;
    $('d-title').textContent = `${e.module} ${e.kind}${e.dir ? ` ${e.dir}` : ''} · ${e.comm} (${e.pid}) · ${fmt(e.length)} bytes`;
    const p = e.payload;
    const parts = [fieldTable(e), ...kindSection(e)];
    if (p.length) {
      const n = Math.min(p.length, SHOW_BYTES);
      parts.push(
        el('h3', { textContent: 'payload as text' }),
        el('pre', { className: 'text', textContent: textOf(p.subarray(0, n)) }),
        cutNote(n, p.length),
        el('h3', { textContent: 'payload as hex' }),
        el('pre', { className: 'hex', textContent: hexDump(p) }),
        cutNote(n, p.length),
      );
    }
    $('d-body').replaceChildren(...parts.filter(Boolean));
    $('d-body').scrollTop = 0;
  }

  function hideDetail() {
    $('detail').hidden = true;
  }

  // ---------------------------------------------------------------- export

  function exportEvents() {
    const ids = [];
    if ($('export-scope').value === 'selected') {
      for (const id of selection) if (store.has(id)) ids.push(id);
      ids.sort((a, c) => a - c);
    } else {
      const n = view.length();
      for (let i = 0; i < n; i++) ids.push(view.at(i));
    }
    return ids.map((id) => store.get(id));
  }

  function base64(bytes) {
    return btoa(latin1(bytes));
  }

  const J = JSON.stringify;

  /** One line of WIRE.md §5's json format (keys in the forwarder's order). */
  function ndjsonLine(e) {
    return `{"timestamp":${e.ts},"uuid":${J(e.uuid)},"src_ip":${J(e.src)},"src_port":${e.sport},`
      + `"dst_ip":${J(e.dst)},"dst_port":${e.dport},"pid":${e.pid},"pname":${J(e.comm)},"type":${e.type},`
      + `"length":${e.length},"payload":"${base64(e.payload)}","tid":${e.tid},"uid":${e.uid},`
      + `"module":${J(e.module)},"fd":${e.fd},"truncated":${e.truncated},"seq":${e.seq}}\n`;
  }

  function stamp() {
    const d = new Date();
    return `${d.getFullYear()}${pad(d.getMonth() + 1, 2)}${pad(d.getDate(), 2)}-${pad(d.getHours(), 2)}${pad(d.getMinutes(), 2)}${pad(d.getSeconds(), 2)}`;
  }

  function download(name, blob) {
    const a = el('a', { href: URL.createObjectURL(blob), download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  }

  function exportNdjson() {
    const evs = exportEvents();
    if (!evs.length) {
      message('nothing to export: no rows in that scope', true);
      return;
    }
    download(`rcapture-${stamp()}.ndjson`, new Blob(evs.map(ndjsonLine), { type: 'application/x-ndjson' }));
    message(`exported ${fmt(evs.length)} events as NDJSON`);
  }

  const pad4 = (n) => (n + 3) & ~3;

  function block(type, bodyLen, write) {
    const len = 12 + pad4(bodyLen);
    const buf = new ArrayBuffer(len);
    const v = new DataView(buf);
    v.setUint32(0, type, true);
    v.setUint32(4, len, true);
    write(v, new Uint8Array(buf), 8);
    v.setUint32(len - 4, len, true);
    return buf;
  }

  /** pcapng (one Ethernet interface, nanosecond stamps) of the packet
   * events, with a Decryption Secrets Block holding the key log lines. */
  function pcapng(packets, keylog) {
    const parts = [];
    parts.push(block(0x0a0d0d0a, 16, (v, _, o) => {
      v.setUint32(o, 0x1a2b3c4d, true);
      v.setUint16(o + 4, 1, true);
      v.setUint16(o + 6, 0, true);
      v.setBigInt64(o + 8, -1n, true);
    }));
    // linktype 1 (Ethernet), snaplen 0 (none), option if_tsresol = 9 (ns), end of options.
    parts.push(block(1, 20, (v, u, o) => {
      v.setUint16(o, 1, true);
      v.setUint32(o + 4, 0, true);
      v.setUint16(o + 8, 9, true);
      v.setUint16(o + 10, 1, true);
      u[o + 12] = 9;
    }));
    if (keylog.length) {
      parts.push(block(0x0000000a, 8 + keylog.length, (v, u, o) => {
        v.setUint32(o, 0x544c534b, true);
        v.setUint32(o + 4, keylog.length, true);
        u.set(keylog, o + 8);
      }));
    }
    for (const e of packets) {
      const p = e.payload;
      const ts = BigInt.asUintN(64, e.ts);
      parts.push(block(6, 20 + p.length, (v, u, o) => {
        v.setUint32(o, 0, true);
        v.setUint32(o + 4, Number(ts >> 32n), true);
        v.setUint32(o + 8, Number(ts & 0xffffffffn), true);
        v.setUint32(o + 12, p.length, true);
        v.setUint32(o + 16, p.length + e.truncated, true);
        u.set(p, o + 20);
      }));
    }
    return new Blob(parts, { type: 'application/vnd.tcpdump.pcap' });
  }

  function exportPcapng() {
    const packets = exportEvents().filter((e) => e.kind === 'packet');
    if (!packets.length) {
      message('no packet events in that scope: pcapng holds packets (kind packet) only; use NDJSON for the others', true);
      return;
    }
    // The key log of every master-key event held, so that the packets
    // decrypt whatever the view's filter.
    const lines = new Set();
    for (let id = store.first; id < store.next; id++) {
      const e = store.get(id);
      if (e.kind !== 'masterkey') continue;
      for (const l of latin1(e.payload).split('\n')) if (l.trim()) lines.add(l.trim());
    }
    const keylog = new TextEncoder().encode(lines.size ? `${[...lines].join('\n')}\n` : '');
    download(`rcapture-${stamp()}.pcapng`, pcapng(packets, keylog));
    message(`exported ${fmt(packets.length)} packets as pcapng${lines.size ? ` with ${lines.size} key log lines` : ''}`);
  }

  // -------------------------------------------------------------- controls

  function setPaused(p) {
    state.paused = p;
    const btn = $('pause');
    btn.textContent = p ? 'Resume' : 'Pause';
    btn.classList.toggle('on', p);
    btn.setAttribute('aria-pressed', String(p));
    updateRows();
  }

  function clearAll() {
    store.clear();
    selection.clear();
    anchor = -1;
    view.rebuild();
    hideDetail();
    state.follow = true;
    schedule();
    updateRows();
  }

  function parsePids(text) {
    const out = new Set();
    for (const part of text.split(/[\s,]+/)) {
      if (!part) continue;
      if (!/^\d{1,10}$/.test(part) || Number(part) > 0xffffffff) return null;
      out.add(Number(part));
    }
    return out;
  }

  function applyFilter() {
    const pidInput = $('f-pid');
    const pids = parsePids(pidInput.value);
    pidInput.classList.toggle('bad', pids === null);
    if (pids === null) {
      message(`pid: ${J(pidInput.value)} is not a list of numbers`, true);
      return;
    }
    const text = $('f-text').value.trim().toLowerCase();
    const changedServer = filter.module !== $('f-module').value
      || filter.packets !== $('f-packets').checked
      || pids.size !== filter.pids.size || [...pids].some((p) => !filter.pids.has(p));
    filter.module = $('f-module').value;
    filter.packets = $('f-packets').checked;
    filter.pids = pids;
    filter.text = text;
    filter.needle = new TextEncoder().encode(text);
    if (changedServer) subscribe();
    view.rebuild();
    state.follow = true;
    schedule();
    updateRows();
  }

  function debounce(fn, ms) {
    let t = 0;
    return () => {
      clearTimeout(t);
      t = setTimeout(fn, ms);
    };
  }

  function selectAt(index, ev) {
    const n = view.length();
    if (index < 0 || index >= n) return;
    const id = view.at(index);
    if (ev && ev.shiftKey && anchor >= 0 && store.has(anchor)) {
      const a = view.indexOf(anchor);
      if (a >= 0) {
        if (!(ev.ctrlKey || ev.metaKey)) selection.clear();
        for (let i = Math.min(a, index); i <= Math.max(a, index); i++) selection.add(view.at(i));
      }
    } else if (ev && (ev.ctrlKey || ev.metaKey)) {
      if (selection.has(id)) selection.delete(id);
      else selection.add(id);
      anchor = id;
    } else {
      selection.clear();
      selection.add(id);
      anchor = id;
    }
    showDetail(store.get(id));
    schedule();
  }

  function bind() {
    const sc = $('scroller');
    const probe = makeRow();
    probe.style.visibility = 'hidden';
    $('rows').append(probe);
    rowHeight = probe.getBoundingClientRect().height || 22;
    probe.remove();

    sc.addEventListener('scroll', () => {
      state.follow = sc.scrollTop + sc.clientHeight >= sc.scrollHeight - rowHeight * 1.5;
      schedule();
    }, { passive: true });
    window.addEventListener('resize', schedule);
    $('rows').addEventListener('click', (ev) => {
      const row = ev.target.closest('.row');
      if (!row || row.rid < 0) return;
      state.follow = false;
      selectAt(view.indexOf(row.rid), ev);
    });
    sc.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
      ev.preventDefault();
      const cur = anchor >= 0 ? view.indexOf(anchor) : -1;
      const next = ev.key === 'ArrowDown' ? cur + 1 : cur < 0 ? view.length() - 1 : cur - 1;
      if (next < 0 || next >= view.length()) return;
      state.follow = false;
      selectAt(next, null);
      const y = next * rowHeight;
      if (y < sc.scrollTop) sc.scrollTop = y;
      else if (y + rowHeight > sc.scrollTop + sc.clientHeight) sc.scrollTop = y + rowHeight - sc.clientHeight;
    });
    $('d-close').addEventListener('click', hideDetail);
    $('pause').addEventListener('click', () => setPaused(!state.paused));
    $('clear').addEventListener('click', clearAll);
    $('f-module').addEventListener('change', applyFilter);
    $('f-packets').addEventListener('change', applyFilter);
    const later = debounce(applyFilter, 300);
    $('f-pid').addEventListener('input', later);
    $('f-text').addEventListener('input', later);
    for (const id of ['f-pid', 'f-text']) {
      $(id).addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') applyFilter();
      });
    }
    $('export-ndjson').addEventListener('click', exportNdjson);
    $('export-pcapng').addEventListener('click', exportPcapng);
    $('auth-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      state.token = $('auth-token').value;
      try {
        sessionStorage.setItem(TOKEN_KEY, state.token);
      } catch {
        // Storage refused (private mode): the token lasts for this page.
      }
      state.askingToken = false;
      $('auth').close();
      if (await checkAccess()) connect();
    });
    $('auth').addEventListener('cancel', (ev) => ev.preventDefault());
  }

  async function start() {
    bind();
    const m = /^#token=(.+)$/.exec(location.hash);
    if (m) {
      state.token = decodeURIComponent(m[1]);
      history.replaceState(null, '', location.pathname);
    } else {
      try {
        state.token = sessionStorage.getItem(TOKEN_KEY) || '';
      } catch {
        state.token = '';
      }
    }
    updateRows();
    setInterval(pollStatus, 1000);
    setInterval(watchdog, 5000);
    if (await checkAccess()) connect();
    else if (!state.askingToken) reconnectLater('not connected');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
