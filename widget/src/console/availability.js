// The agent's availability (protocol.md §15): online (takes auto-assigned conversations up to
// the capacity), away (keeps theirs, takes no new ones) or offline. The choice is remembered in
// localStorage and sent with `availability` every time the console connects; what the desk
// answers (`agent`: status, load, capacity, muted) is shown next to it.

import { setAvailability } from '../sdk/desk.js';
import { agentText, storedAvailability } from './format.js';

export class AvailabilityControl {
  /**
   * @param {import('../sdk/client.js').RoomcastClient} client
   * @param {{storage: Storage|null, key: string, status: HTMLSelectElement, capacity: HTMLInputElement, shown: HTMLElement, muted: () => boolean|undefined, failed: (text: string) => void}} o
   *   `muted`: undefined leaves the desk's as it is
   */
  constructor(client, o) {
    this.client = client;
    this.o = o;
    this.choice = storedAvailability(o.storage?.getItem(o.key));
    /** When the last `agent` reply came (ms). */
    this.at = 0;
    o.status.value = this.choice.status;
    o.capacity.value = String(this.choice.capacity);
    o.status.addEventListener('change', () => this.chose());
    o.capacity.addEventListener('change', () => this.chose());
  }

  chose() {
    const capacity = Number(this.o.capacity.value);
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 50) {
      this.o.capacity.setAttribute('aria-invalid', 'true');
      return this.o.failed('Capacity: a whole number from 1 to 50.');
    }
    this.o.capacity.removeAttribute('aria-invalid');
    this.choice = { status: this.o.status.value, capacity };
    try {
      this.o.storage?.setItem(this.o.key, JSON.stringify(this.choice));
    } catch {
      // Storage full or disabled: the choice lasts until the page is reloaded.
    }
    this.send();
  }

  /** Tells the desk (on connecting, on a change, on mute). */
  async send() {
    try {
      const agent = await setAvailability(this.client, { ...this.choice, muted: this.o.muted() });
      this.at = Date.now();
      this.show(agent);
    } catch (e) {
      this.o.failed(`Could not set availability: ${e.code || e.message}`);
    }
  }

  /** Shows the desk's view of this agent (from the `agent` reply, or the list's `agents`). */
  show(agent) {
    if (!agent) return;
    this.agent = agent;
    const text = agentText(agent);
    if (this.o.shown.textContent !== text) this.o.shown.textContent = text;
    this.o.shown.dataset.status = agent.status;
  }
}
