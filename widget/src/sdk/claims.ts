// A token's claims as the client reads them: to plan refreshes and rotations, and to know its
// own user and role. The server verifies tokens; the client never does.

/** The claims the client reads (a token may carry more). */
export interface Claims {
  sub?: string;
  role?: string;
  name?: string;
  exp?: number;
  iat?: number;
  [claim: string]: unknown;
}

/** Reads a JWT's claims without verifying it (the server verifies; the client only plans). */
export function decodeClaims(token: string): Claims {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      [...atob(part + '==='.slice((part.length + 3) % 4))].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    return JSON.parse(json) || {};
  } catch {
    return {};
  }
}
