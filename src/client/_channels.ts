/**
 * The one way the client reads a list of channels from the server: page after page of
 * `listChannelsPage`, each within a frame however many groups others added us to, until
 * the server says there is no more, or {@link MAX_CLIENT_LIST_PAGES} pages.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { MAX_CLIENT_LIST_PAGES } from "../limits.ts";
import { toHex } from "../bytes.ts";
import type { ChannelInfo } from "../wire/mod.ts";
import type { Session } from "./session.ts";

/** Which list {@link listAllChannels} reads. */
export interface ListChannelsOptions {
  /** The held invitations (groups we were added to while at the server's cap). */
  held?: boolean;
}

/**
 * Every channel the server lists for us (or every held invitation), in id order.
 *
 * @throws ValidationError when the server's pages do not move forward or never end
 */
export async function listAllChannels(
  session: Session,
  options: ListChannelsOptions = {},
): Promise<ChannelInfo[]> {
  const out: ChannelInfo[] = [];
  let after: Uint8Array = new Uint8Array(0);
  let last = ""; // the server orders by the hex of the id
  for (let page = 0; page < MAX_CLIENT_LIST_PAGES; page++) {
    const r = await session.call(
      { kind: "listChannelsPage", after, held: options.held ?? false },
      "channels",
    );
    for (const c of r.channels) {
      const id = toHex(c.channelId);
      if (id <= last) throw new ValidationError("The server's channel list went backwards");
      last = id;
      after = c.channelId;
      out.push(c);
    }
    if (!r.more) return out;
    if (r.channels.length === 0) throw new ValidationError("The server sent an empty page");
  }
  throw new ValidationError(
    `The server lists more than ${MAX_CLIENT_LIST_PAGES} pages of channels`,
  );
}
