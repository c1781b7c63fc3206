// The agent's notifications: a short tone (WebAudio), a desktop notification (the Notification
// API, once the agent allowed it with the "Enable notifications" button: browsers only ask on a
// user gesture) and a count in the tab's title. Mute silences the tone and the desktop ones
// (persisted; the desk keeps it too, as `muted` in `availability`); the title count stays.

import { titleWithCount } from './format.js';

export class Notifier {
  /**
   * @param {{storage: Storage|null, key: string, enable: HTMLButtonElement, mute: HTMLButtonElement, onMute: (muted: boolean) => void}} o
   */
  constructor({ storage, key, enable, mute, onMute }) {
    this.storage = storage;
    this.key = key;
    this.enable = enable;
    this.muteButton = mute;
    this.baseTitle = document.title;
    const stored = storage?.getItem(key);
    /** Whether this browser has the agent's choice; else the desk's (`agent.muted`) is followed. */
    this.chosen = stored === '1' || stored === '0';
    this.muted = stored === '1';
    this.audio = null;
    enable.addEventListener('click', async () => {
      try {
        await Notification.requestPermission();
      } catch {
        // Permission prompts refused outright (some embedded browsers): nothing to enable.
      }
      this.showPermission();
    });
    mute.addEventListener('click', () => {
      this.muted = !this.muted;
      this.chosen = true;
      try {
        storage?.setItem(key, this.muted ? '1' : '0');
      } catch {
        // Storage full or disabled: the choice lasts until the page is reloaded.
      }
      this.showMute();
      onMute(this.muted);
    });
    // Browsers start an AudioContext suspended until the page is used: wake it on the first use.
    const wake = () => this.audioContext()?.resume().catch(() => {});
    document.addEventListener('pointerdown', wake, { once: true });
    document.addEventListener('keydown', wake, { once: true });
    this.showPermission();
    this.showMute();
  }

  /** The desk's `muted`, followed while this browser has no choice of its own (another browser's). */
  follow(muted) {
    if (this.chosen || this.muted === Boolean(muted)) return;
    this.muted = Boolean(muted);
    this.showMute();
  }

  get permission() {
    return typeof Notification === 'function' ? Notification.permission : 'unsupported';
  }

  showPermission() {
    const p = this.permission;
    this.enable.hidden = p !== 'default';
    this.enable.title = p === 'default' ? 'Show desktop notifications for new conversations and messages' : '';
  }

  showMute() {
    this.muteButton.setAttribute('aria-pressed', String(this.muted));
    this.muteButton.textContent = this.muted ? 'Unmute' : 'Mute';
  }

  audioContext() {
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!this.audio && Ctx) this.audio = new Ctx();
    return this.audio;
  }

  /** A short two-note tone. */
  tone() {
    try {
      const ctx = this.audioContext();
      if (!ctx) return;
      if (ctx.state === 'suspended') ctx.resume().catch(() => {});
      const t = ctx.currentTime;
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.setValueAtTime(880, t);
      osc.frequency.setValueAtTime(1175, t + 0.12);
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.15, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.32);
    } catch {
      // No audio output: the other notifications still go.
    }
  }

  /** Tells the agent: tone and desktop notification (unless muted). `tag` replaces an earlier one for the same thing. */
  notify(title, body, tag, onClick) {
    if (this.muted) return;
    this.tone();
    if (this.permission !== 'granted') return;
    try {
      const n = new Notification(title, { body, tag });
      n.onclick = () => {
        window.focus();
        onClick?.();
        n.close();
      };
    } catch {
      // Some browsers only allow notifications from a service worker: the title count remains.
    }
  }

  /** The count in the tab's title. */
  count(n) {
    const title = titleWithCount(n, this.baseTitle);
    if (document.title !== title) document.title = title;
  }
}
