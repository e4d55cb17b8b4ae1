"""localstripe's Stripe.js stand-in (localstripe-v3.js), with what the product's pages rely on and it lacks.

Stripe.js's own card Element checks what is typed and reports it in its `change` events, and
`stripe.confirmCardPayment(clientSecret, {payment_method: {card}})` confirms the PaymentIntent with the card's details
(then runs 3-D Secure if the bank asks). The stand-in's Element reports nothing and takes only a 2-digit year, and its
confirmCardPayment only runs the 3-D Secure step. The script served by the launcher is localstripe's, followed by the
patch below, so the pages are written for Stripe.js alone.
"""

from functools import cache
from pathlib import Path

import localstripe

_PATCH = r"""
/* Added by the product's localstripe launcher: the parts of Stripe.js the stand-in lacks. */
(function () {
  "use strict";
  const FIELDS = ["number", "exp_month", "exp_year", "cvc", "postal_code"];

  // What Stripe's card Element reports in its change events: empty, complete, and a validation error if any.
  function cardState(inputs) {
    const text = {};
    FIELDS.forEach(field => { text[field] = inputs[field].value.trim(); });
    const state = {empty: FIELDS.every(field => !text[field]), complete: false, error: undefined, field: null};
    function invalid(field, code, message) {
      state.error = {type: "validation_error", code: code, message: message};
      state.field = field;
    }
    if (text.number && !/^[0-9 ]+$/.test(text.number)) {
      invalid("number", "invalid_number", "Your card number is invalid.");
    } else if (text.exp_month &&
               (!/^[0-9]{1,2}$/.test(text.exp_month) || +text.exp_month < 1 || +text.exp_month > 12)) {
      invalid("exp_month", "invalid_expiry_month", "Your card's expiration month is invalid.");
    } else if (text.exp_year && !/^([0-9]{2}|20[0-9]{2})$/.test(text.exp_year)) {
      invalid("exp_year", "invalid_expiry_year", "Your card's expiration year is invalid.");
    }
    state.complete = !state.error && text.number.replace(/ /g, "").length === 16 && !!text.exp_month &&
      !!text.exp_year && /^[0-9]{3}$/.test(text.cvc);
    return state;
  }

  const mount = Element.prototype.mount;
  Element.prototype.mount = function (domElement) {
    mount.call(this, domElement);
    const element = this;
    FIELDS.forEach(field => {
      element._inputs[field].oninput = () => {
        const inputs = element._inputs;
        const year = inputs.exp_year.value.trim();
        element.value = {
          card: {
            number: inputs.number.value.replace(/ /g, ""),
            exp_month: inputs.exp_month.value.trim(),
            // The stand-in's inputs are plain: a year typed with 4 digits is taken as it is.
            exp_year: year.length === 4 ? year : "20" + year,
            cvc: inputs.cvc.value.trim(),
          },
          postal_code: inputs.postal_code.value.trim(),
        };
        element._state = cardState(inputs);
        const event = {elementType: "card", empty: element._state.empty, complete: element._state.complete,
                       error: element._state.error, value: {postalCode: element.value.postal_code}};
        (element.listeners.change || []).forEach(handler => handler(event));
      };
    });
  };

  // Stripe's Element.focus(); the stand-in focuses the field in error, else the card number.
  Element.prototype.focus = function () {
    const field = (this._state && this._state.field) || "number";
    if (this._inputs) { this._inputs[field].focus(); }
  };

  // Stripe.js answers a confirm with an unusable card Element with a validation error, and calls no API.
  function cardProblem(data) {
    const card = data && data.payment_method && data.payment_method.card;
    if (!(card instanceof Element)) { return null; }
    const state = card._state;
    if (!state || state.empty) {
      return {type: "validation_error", code: "incomplete_number", message: "Your card number is incomplete."};
    }
    return state.error || null;
  }

  // localstripe refuses card details it cannot read with a bare "Bad request"; Stripe's messages speak to the
  // card holder.
  function asStripeError(result) {
    if (result && result.error && (!result.error.message || result.error.message === "Bad request")) {
      result.error = Object.assign({}, result.error, {
        type: "card_error",
        message: "Your card's details are not valid. Check the number, the expiry date and the security code."});
    }
    return result;
  }

  const makeStripe = Stripe;
  Stripe = (apiKey) => {
    const stripe = makeStripe(apiKey);
    const confirmCardSetup = stripe.confirmCardSetup;
    const authenticate = stripe.confirmCardPayment;  // the stand-in's: the 3-D Secure dialog only

    stripe.confirmCardSetup = async (clientSecret, data) => {
      const problem = cardProblem(data);
      return problem ? {error: problem} : asStripeError(await confirmCardSetup(clientSecret, data));
    };

    stripe.confirmCardPayment = async (clientSecret, data) => {
      if (data && data.payment_method) {
        const problem = cardProblem(data);
        if (problem) { return {error: problem}; }
        const body = {key: apiKey, client_secret: clientSecret};
        if (typeof data.payment_method === "string") {
          body.payment_method = data.payment_method;
        } else {
          const value = data.payment_method.card.value;
          body.payment_method_data = {type: "card", card: value.card,
                                      billing_details: {address: {postal_code: value.postal_code}}};
        }
        const pi = clientSecret.match(/^(pi_\w+)_secret_/)[1];
        try {
          const response = await fetch(`${LOCALSTRIPE_BASE_API}/v1/payment_intents/${pi}/confirm`,
                                       {method: "POST", body: JSON.stringify(body)});
          const intent = await response.json().catch(() => ({}));
          if (response.status !== 200 || intent.error) { return asStripeError({error: intent.error || {}}); }
          if (intent.status !== "requires_action") { return {paymentIntent: intent}; }
        } catch (err) {
          return {error: {type: "api_connection_error", message: String(err)}};
        }
      }
      const result = await authenticate(clientSecret);
      // Stripe.js reports a failed authentication as an error naming the PaymentIntent.
      const intent = result.paymentIntent;
      if (intent && intent.status === "requires_payment_method") {
        const error = intent.last_payment_error || {};
        return {error: {type: "invalid_request_error", code: error.code || "payment_intent_authentication_failure",
                        message: error.message || "The payment was not authenticated.", payment_intent: intent}};
      }
      return result;
    };
    return stripe;
  };
})();
"""


@cache
def patched_stripe_js() -> str:
    original = (Path(localstripe.__file__).parent / "localstripe-v3.js").read_text()
    return original + _PATCH
