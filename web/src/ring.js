// A fixed-size ring of (time, value) points per sensor: live data never
// grows past its capacity, whatever rate a sensor streams at.

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
    // Out of order (a reconnect can replay): keep the series monotonic.
    if (last && t <= last[0]) return;
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
        ys.push(this.v[i]);
      }
    }
    return [xs, ys];
  }
}
