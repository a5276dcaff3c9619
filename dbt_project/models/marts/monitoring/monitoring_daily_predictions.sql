{#- Score bins are fixed edges (scores are probabilities); a model's reference distribution is
    its first served day, so score drift reads "this day vs the day the model went live". -#}
{%- set score_edges = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75] %}

with

served as (
    select * from {{ ref('stg_serving__predictions') }}
),

binned as (
    select
        event_date as day,
        model_id,
        request_id,
        score,
        predicted_label,
        {%- for edge in score_edges %}
        cast(score >= {{ edge }} as integer){{ " +" if not loop.last else " as score_bin" }}
        {%- endfor %}
    from served
),

daily as (
    select
        day,
        model_id,
        count(distinct request_id) as count_requests,
        count(*) as count_predictions,
        avg(score) as mean_score,
        -- binary only: the share predicted positive
        avg(case predicted_label when '1' then 1.0 when '0' then 0.0 end) as positive_rate
    from binned
    group by all
),

reference_day as (
    select model_id, min(day) as reference_day from daily group by all
),

bins as (
    select unnest(range(0, {{ score_edges | length + 1 }})) as score_bin
),

grid as (
    select daily.day, daily.model_id, daily.count_predictions, reference_day.reference_day, bins.score_bin
    from daily
    inner join reference_day using (model_id)
    cross join bins
),

per_bin as (
    select day, model_id, score_bin, count(*) as count_in_bin from binned group by all
),

shares as (
    select
        grid.day,
        grid.model_id,
        grid.score_bin,
        coalesce(actual.count_in_bin, 0)::double / grid.count_predictions as actual_share,
        coalesce(expected.count_in_bin, 0)::double / ref.count_predictions as expected_share
    from grid
    left join per_bin as actual
        on actual.day = grid.day and actual.model_id = grid.model_id and actual.score_bin = grid.score_bin
    left join per_bin as expected
        on expected.day = grid.reference_day and expected.model_id = grid.model_id and expected.score_bin = grid.score_bin
    inner join daily as ref
        on ref.day = grid.reference_day and ref.model_id = grid.model_id
),

score_psi as (
    select day, model_id, sum({{ psi_term('actual_share', 'expected_share') }}) as score_psi
    from shares
    group by all
),

final as (
    select
        daily.day,
        daily.model_id,
        daily.count_requests,
        daily.count_predictions,
        daily.mean_score,
        daily.positive_rate,
        reference_day.reference_day,
        round(score_psi.score_psi, 6) as score_psi
    from daily
    inner join reference_day using (model_id)
    inner join score_psi using (day, model_id)
)

select * from final
