// node --test loads its global-setup module without the --import hooks, so register tsx here first.
import { register } from 'tsx/esm/api';

register();
const setup = await import('./control-plane-setup.ts');

export const globalSetup = setup.globalSetup;
export const globalTeardown = setup.globalTeardown;
