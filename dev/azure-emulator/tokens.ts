/**
 * The emulator's token signer: one RS256 key per run, published as a JWKS, used for every access token the
 * emulated Azure AD and IMDS issue, and checked by the emulated ARM on every request.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify, errors, type JWK, type JWTPayload, type CryptoKey } from 'jose';

export const ARM_AUDIENCES = ['https://management.azure.com', 'https://management.azure.com/', 'https://management.core.windows.net/', 'https://management.core.windows.net'];

export interface AccessTokenRequest {
  /** The token's `aud`: the resource (a scope's `/.default` suffix already removed). */
  resource: string;
  principalId: string;
  clientId: string;
  /** Identity resource id, for managed identities (`xms_mirid`). */
  miResourceId?: string;
  /** Seconds from now; negative mints an already-expired token (for tests). */
  lifetimeSeconds?: number;
  extraClaims?: Record<string, unknown>;
}

export interface IssuedToken {
  token: string;
  expiresOn: number;
  notBefore: number;
  issuedAt: number;
}

export type BearerClaims = JWTPayload & { oid?: string; appid?: string; tid?: string };

export type BearerCheck =
  | { ok: true; claims: BearerClaims }
  | { ok: false; code: string; message: string };

export class TokenSigner {
  private constructor(
    private readonly privateKey: CryptoKey,
    private readonly publicKey: CryptoKey,
    readonly jwk: JWK,
    readonly kid: string,
    readonly tenantId: string,
    readonly defaultLifetimeSeconds: number,
  ) {}

  static async create(tenantId: string, defaultLifetimeSeconds: number): Promise<TokenSigner> {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const kid = randomUUID().replace(/-/g, '').slice(0, 27);
    const jwk = { ...(await exportJWK(publicKey)), kid, use: 'sig', alg: 'RS256' };
    return new TokenSigner(privateKey, publicKey, jwk, kid, tenantId, defaultLifetimeSeconds);
  }

  get issuer(): string {
    return `https://sts.windows.net/${this.tenantId}/`;
  }

  jwks(): { keys: JWK[] } {
    return { keys: [this.jwk] };
  }

  async issue(req: AccessTokenRequest): Promise<IssuedToken> {
    const now = Math.floor(Date.now() / 1000);
    const lifetime = req.lifetimeSeconds ?? this.defaultLifetimeSeconds;
    const notBefore = lifetime < 0 ? now + lifetime - 3600 : now;
    const issuedAt = notBefore;
    const expiresOn = now + lifetime;
    const claims: JWTPayload = {
      aud: req.resource,
      iss: this.issuer,
      iat: issuedAt,
      nbf: notBefore,
      exp: expiresOn,
      oid: req.principalId,
      sub: req.principalId,
      appid: req.clientId,
      azp: req.clientId,
      appidacr: '1',
      idtyp: 'app',
      tid: this.tenantId,
      uti: randomUUID().replace(/-/g, ''),
      ver: '1.0',
      ...(req.miResourceId ? { xms_mirid: req.miResourceId } : {}),
      ...req.extraClaims,
    };
    const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.kid }).sign(this.privateKey);
    return { token, expiresOn, notBefore, issuedAt };
  }

  /** Validates an ARM bearer token the way ARM does: our signature, our tenant, not expired, an ARM audience. */
  async verifyBearer(token: string, acceptedAudiences: string[]): Promise<BearerCheck> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.publicKey, { algorithms: ['RS256'], clockTolerance: 300 }));
    } catch (err) {
      if (err instanceof errors.JWTExpired) {
        return { ok: false, code: 'ExpiredAuthenticationToken', message: 'The access token expiry UTC time is earlier than current UTC time.' };
      }
      return { ok: false, code: 'InvalidAuthenticationToken', message: 'The access token is invalid.' };
    }
    if (payload.iss !== this.issuer || payload['tid'] !== this.tenantId) {
      return { ok: false, code: 'InvalidAuthenticationTokenTenant', message: `The access token is from the wrong issuer '${String(payload.iss)}'. It must match the tenant '${this.issuer}' associated with this subscription.` };
    }
    const auds = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (!auds.some((a) => typeof a === 'string' && acceptedAudiences.includes(a))) {
      return { ok: false, code: 'InvalidAuthenticationTokenAudience', message: `The access token has been obtained for wrong audience or resource '${String(payload.aud)}'. It should exactly match with one of the allowed audiences '${acceptedAudiences.join("','")}'.` };
    }
    if (typeof payload['oid'] !== 'string') {
      return { ok: false, code: 'InvalidAuthenticationToken', message: 'The access token has no oid claim.' };
    }
    return { ok: true, claims: payload as BearerClaims };
  }
}
