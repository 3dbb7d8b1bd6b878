// A fixed-size ring of (time, value) points per sensor: live data never
// grows past its capacity, whatever rate a sensor streams at.

const CLOCK_JUMP_S = 5;

export class Ring {
  constructor(capacity) {
    this.t = new Float64Array(capacity);
    this.v = new Float64Array(capacity);
    this.start = 0;
    this.len = 0;
  }

  get capacity() {
    return this.t.length;
  }

  last() {
    if (!this.len) return null;
    const i = (this.start + this.len - 1) % this.capacity;
    return [this.t[i], this.v[i]];
  }

  push(t, v) {
    const last = this.last();
    if (last && t <= last[0]) {
      // A small step back (a reconnect can replay): keep the series
      // monotonic. A big one (a device's clock jumped back, or a reading
      // pushed from the future): start again rather than freeze.
      if (last[0] - t < CLOCK_JUMP_S) return;
      this.start = 0;
      this.len = 0;
    }
    const i = (this.start + this.len) % this.capacity;
    this.t[i] = t;
    this.v[i] = v;
    if (this.len < this.capacity) this.len += 1;
    else this.start = (this.start + 1) % this.capacity;
  }

  // The points with time >= since, oldest first, as uPlot data.
  data(since) {
    const xs = [];
    const ys = [];
    for (let k = 0; k < this.len; k++) {
      const i = (this.start + k) % this.capacity;
      if (this.t[i] >= since) {
        xs.push(this.t[i]);
        // A non-finite value (sent as JSON null) is a gap, not a zero.
        ys.push(Number.isFinite(this.v[i]) ? this.v[i] : null);
      }
    }
    return [xs, ys];
  }
}
