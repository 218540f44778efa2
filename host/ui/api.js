// The API client: every call sends the signed-in token as a bearer token and
// turns an `{"error": {"code", "message"}}` answer into an ApiError.

const TOKEN_KEY = 'assay.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function storeToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// `api('/datasets')` → the parsed JSON of GET /api/v1/datasets.
// Options: method, body (sent as JSON), signal (an AbortSignal), token.
export async function api(path, options = {}) {
  const headers = {Accept: 'application/json'};
  const token = options.token ?? storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method: options.method || (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      signal: options.signal,
      cache: 'no-store',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'unreachable', 'The server could not be reached. Is it running?');
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const error = json && json.error;
    throw new ApiError(
      response.status,
      (error && error.code) || `http_${response.status}`,
      (error && error.message) || `The server answered ${response.status} ${response.statusText}.`,
    );
  }
  return json;
}

// A path segment, escaped.
export function segment(text) {
  return encodeURIComponent(text);
}
