/**
 * ARM's cloud metadata, `GET /metadata/endpoints?api-version=…`, which custom-cloud clients (Azure Stack Hub
 * setups, `az cloud register --endpoint-resource-manager`, SDK environment loaders) read to learn a cloud's
 * login endpoint, token audience and resource manager. Like real ARM it needs no bearer token. Every endpoint
 * names the emulator itself (as reached, from the request's Host); data-plane suffixes sit under `.invalid`,
 * because the emulator serves no data plane and a client must never be sent to the real one.
 */
import { armError, type RequestContext, type Route } from '../router.js';

/** The oldest format (Azure Stack's documented `api-version=1.0`): one object with `*Endpoint` fields. */
const LEGACY_VERSIONS = ['1.0', '2015-01-01'];
/** A list of clouds, each in the current field names. */
const LIST_VERSIONS = ['2018-01-01', '2019-05-01', '2020-06-01'];
/** One object: the cloud this endpoint belongs to, in the current field names. */
const SINGLE_VERSIONS = ['2022-09-01', '2023-11-01'];
export const METADATA_API_VERSIONS = [...LEGACY_VERSIONS, ...LIST_VERSIONS, ...SINGLE_VERSIONS];

export const EMULATOR_CLOUD_NAME = 'PodIdentityEmulator';
/** The token audiences the emulator's ARM accepts, the first being the one clients ask for. */
const AUDIENCES = ['https://management.core.windows.net/', 'https://management.azure.com/'];
const NO_DATA_PLANE = 'emulator.invalid';

function cloud(base: string): Record<string, unknown> {
  return {
    portal: base,
    authentication: { loginEndpoint: base, audiences: AUDIENCES, tenant: 'common', identityProvider: 'AAD' },
    media: base,
    graphAudience: base,
    graph: base,
    name: EMULATOR_CLOUD_NAME,
    suffixes: {
      azureDataLakeStoreFileSystem: `datalake.${NO_DATA_PLANE}`,
      acrLoginServer: `acr.${NO_DATA_PLANE}`,
      sqlServerHostname: `sql.${NO_DATA_PLANE}`,
      azureDataLakeAnalyticsCatalogAndJob: `datalakeanalytics.${NO_DATA_PLANE}`,
      keyVaultDns: `vault.${NO_DATA_PLANE}`,
      storage: `storage.${NO_DATA_PLANE}`,
      azureFrontDoorEndpointSuffix: `frontdoor.${NO_DATA_PLANE}`,
    },
    batch: base,
    resourceManager: base,
    vmImageAliasDoc: `${base}metadata/vm-image-aliases`,
    activeDirectoryDataLake: base,
    sqlManagement: base,
    microsoftGraphResourceId: base,
    appInsightsResourceId: base,
    logAnalyticsResourceId: base,
    gallery: base,
  };
}

export function metadataRoutes(): Route[] {
  return [
    {
      name: 'metadata.endpoints',
      method: 'GET',
      family: 'arm',
      anonymous: true,
      pattern: /^\/metadata\/endpoints\/?$/i,
      handle(ctx: RequestContext) {
        const version = ctx.query.get('api-version');
        if (!version) throw armError(400, 'MissingApiVersionParameter', 'The api-version query parameter (?api-version=) is required for all requests.');
        const base = `${ctx.baseUrl}/`;
        if (LEGACY_VERSIONS.includes(version)) {
          return { status: 200, body: { galleryEndpoint: base, graphEndpoint: base, portalEndpoint: base, authentication: { loginEndpoint: base, audiences: AUDIENCES } } };
        }
        if (LIST_VERSIONS.includes(version)) return { status: 200, body: [cloud(base)] };
        if (SINGLE_VERSIONS.includes(version)) return { status: 200, body: cloud(base) };
        throw armError(400, 'InvalidApiVersionParameter', `The api-version '${version}' is invalid. The supported versions are '${METADATA_API_VERSIONS.join(',')}'.`);
      },
    },
  ];
}
