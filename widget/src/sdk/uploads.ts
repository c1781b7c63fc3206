// Sending files: what may be attached (checked here before a slot is asked for, so the user
// hears at once; the server checks again and has the last word), and the bytes sent to a
// slot's upload target with progress and cancel (XMLHttpRequest: fetch reports no upload
// progress). Protocol: docs/protocol.md, attachments.

import { apiError, safeUrl } from './http.js';
import type { ApiError } from './http.js';
import type { UploadTarget } from './types.js';

/** What may be attached: the largest size and the allowed types. */
export interface UploadPolicy {
  maxBytes: number;
  types: string[];
}

/** What the checks read of a file (a File has it). */
export interface FileLike {
  name: string;
  size: number;
  type?: string;
}

/** The server's default largest file: 10 MB. */
export const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;

/** The types the server allows by default, by file extension (browsers leave `File.type` empty for some). */
export const FILE_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  pdf: 'application/pdf',
  txt: 'text/plain',
  csv: 'text/csv',
  svg: 'image/svg+xml',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/vnd.oasis.opendocument.spreadsheet',
};

/** Raster images: the only attachments shown in the page (SVG is markup: a download only). */
export const RASTER_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

/** The upload policy the client checks against: the server's defaults unless given. */
export function uploadPolicy(o: { maxBytes?: number; types?: string[] } = {}): UploadPolicy {
  return { maxBytes: o.maxBytes ?? DEFAULT_MAX_BYTES, types: o.types ?? [...new Set(Object.values(FILE_TYPES))] };
}

/**
 * The type to declare for `file`: its own when allowed, else the one its extension names (a
 * CSV can come as `application/vnd.ms-excel`, a DOCX with no type at all); the server sniffs
 * the bytes either way.
 */
export function fileType(file: FileLike, policy: UploadPolicy): string {
  const own = String(file.type || '').split(';')[0].trim().toLowerCase();
  if (policy.types.includes(own)) return own;
  return FILE_TYPES[(String(file.name).split('.').pop() ?? '').toLowerCase()] || own;
}

/** Why `file` cannot be sent under `policy` (an apiError with the code the server would answer), or null. */
export function checkFile(file: FileLike, policy: UploadPolicy): ApiError | null {
  if (file.size > policy.maxBytes) return apiError('TOO_LARGE', `the file is ${file.size} bytes; the limit is ${policy.maxBytes}`);
  if (!file.size) return apiError('INVALID', 'the file is empty');
  if (!policy.types.includes(fileType(file, policy))) return apiError('INVALID', `files of type \`${file.type || 'unknown'}\` are not allowed`);
  return null;
}

/** `[[name, value], …]` from the server's pairs (or an object of them). */
const pairs = (list: Array<[string, string]> | Record<string, string> | undefined): Array<[string, string]> => (Array.isArray(list) ? list : Object.entries(list || {}));

/**
 * Sends `file` to `grant.upload`: `PUT` the bytes with its `headers`, or `POST` a
 * multipart form (S3): its `fields` in order, then the file as `file`. Resolves when stored;
 * rejects with an apiError: the server's code, NETWORK, or ABORTED when `signal` aborts.
 */
export function uploadFile(
  grant: { upload?: UploadTarget },
  file: Blob,
  { base, onProgress, signal, XHR = globalThis.XMLHttpRequest }: { base: string; onProgress?: (fraction: number) => void; signal?: AbortSignal; XHR?: typeof XMLHttpRequest },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const { method, url, fields, headers }: Partial<UploadTarget> = grant.upload || {};
    const target = safeUrl(url, base);
    if (!target || (method !== 'PUT' && method !== 'POST')) return reject(apiError('INVALID', `cannot upload with ${method} to ${url}`));
    if (signal?.aborted) return reject(apiError('ABORTED', 'cancelled'));
    const xhr = new XHR();
    xhr.open(method, target);
    let body: Blob | FormData = file;
    if (method === 'POST') {
      const form = new FormData();
      for (const [k, v] of pairs(fields)) form.append(k, v);
      form.append('file', file);
      body = form;
    } else for (const [k, v] of pairs(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress?.(1);
        return resolve();
      }
      let answer: { code?: string; message?: string } = {};
      try {
        answer = JSON.parse(xhr.responseText);
      } catch {
        // S3 answers XML: the status says enough.
      }
      const byStatus: Record<number, string> = { 400: 'INVALID', 403: 'FORBIDDEN', 413: 'TOO_LARGE', 429: 'RATE_LIMITED' };
      const code = answer.code || byStatus[xhr.status] || 'UNAVAILABLE';
      reject(apiError(code, answer.message || `upload failed: ${xhr.status}`, xhr.status));
    };
    xhr.onerror = () => reject(apiError('NETWORK', 'the upload did not reach the server'));
    xhr.onabort = () => reject(apiError('ABORTED', 'cancelled'));
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(body);
  });
}
