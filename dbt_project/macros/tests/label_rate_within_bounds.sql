{#- Generic test: each day's label rate (mean of the 0/1 column) lies within
    [min_ratio, max_ratio] times the baseline's rate. A day is judged by those bounds when it is
    large enough to be: its expected number of positives (rows x baseline rate) is at least
    min_expected_positives. A smaller day is judged only when its count of positives is extreme:
    outside the exact binomial bounds (the counts whose one-sided tail probability under the
    baseline rate is at least max_tail_probability), such as every row positive. Otherwise it is
    recorded as not judged (passed null, bounds null): never as a pass. -#}
{% test label_rate_within_bounds(model, column_name, baseline, min_ratio=0.25, max_ratio=4.0, min_expected_positives=30, max_tail_probability=1e-6, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
with

days as (
    {{ daily_vs_baseline(model, column_name, baseline, 'mean', timestamp_column,
                         {'rate': 'avg(cast(' ~ column_name ~ ' as double))'}) }}
),

small as (
    select segment, count_rows as n, least(greatest(expected, 1e-12), 1 - 1e-12) as p
    from days
    where expected is not null and count_rows * expected < {{ min_expected_positives }}
),

outcomes as (
    select segment, n, p, unnest(range(0, n + 1)) as j from small
),

mass as (
    select segment, n, j,
        exp(lgamma(n + 1) - lgamma(j + 1) - lgamma(n - j + 1) + j * ln(p) + (n - j) * ln(1 - p)) as probability
    from outcomes
),

tails as (
    select segment, n, j,
        sum(probability) over (partition by segment order by j) as at_most,
        sum(probability) over (partition by segment order by j desc) as at_least
    from mass
),

binomial as (
    select
        segment,
        min(j) filter (where at_most >= {{ max_tail_probability }}) / n as binomial_lower,
        max(j) filter (where at_least >= {{ max_tail_probability }}) / n as binomial_upper
    from tails
    group by segment, n
),

bounded as (
    select days.*, binomial.binomial_lower, binomial.binomial_upper
    from days
    left join binomial using (segment)
),

final as (
    {{ check_result('bounded', 'label_rate', actual='rate', threshold=min_ratio,
                    lower='coalesce(binomial_lower, expected * ' ~ min_ratio ~ ')',
                    upper='coalesce(binomial_upper, expected * ' ~ max_ratio ~ ')',
                    judged='expected is null or count_rows * expected >= ' ~ min_expected_positives
                           ~ ' or rate < binomial_lower - 1e-12 or rate > binomial_upper + 1e-12') }}
)

select * from final
{% endtest %}
