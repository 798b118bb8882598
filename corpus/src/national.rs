use crate::rng::Rng;
use crate::Sample;

pub(crate) fn generate(_rng: &mut Rng, _out: &mut Vec<Sample>) {}
