/** How live mode names itself at the start of every message it prints or throws. */
export const WHO = 'fedpool simulate --live';
