/**
 * The content budget of a decode (codec.ts and its direct path, _direct.ts): what one decode
 * may still produce, in bytes. In a well-formed frame every Data and Text value, list element
 * and struct occupies its own bytes of the frame, so all of them together fit in the frame's
 * size. Pointers that share a target (a list of elements all pointing at one large blob, a
 * list of zero-size structs claiming 2^29 elements) would otherwise turn a small frame into
 * gigabytes of copies or seconds of CPU: the budget refuses such a frame as soon as it
 * outgrows itself. One rule for both paths.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";

/** What one decode may still produce, in bytes. */
export interface Budget {
  left: number;
}

/** Spend `bytes` of the budget; refuse the frame once it outgrows itself. */
export function spend(budget: Budget, bytes: number): void {
  budget.left -= bytes;
  if (budget.left < 0) {
    throw new ValidationError("Malformed frame: content larger than the frame (shared pointers)");
  }
}
